"""The Dogs & Cats challenge on a GPU: the full-data recipe (``--recipe challenge``) trained there, printing the
epoch time, the training images/s and the wall time to 90%, 94.35% and 96% validation accuracy.

A lent GPU machine receives the repository and nothing beside it, at most 64 MiB of it (see the device tool's
README), and reaches no network: the 185 MB of the 200px Kaggle set cannot travel whole. So the script has two
steps. On the CPU machine, ``--pack DIR`` copies as many of the folder's JPEGs as fit ``--max-mib`` (both classes
alike, in a fixed order) into DIR, a folder that git ignores and the device call carries. On the GPU machine the
run trains on DIR; with the whole set where the data is at hand (a GPU machine of one's own), on that.

    python benchmarks/gpu_dogs_vs_cats.py --pack .gpu-data/train --max-mib 56      # here, once
    python benchmarks/gpu_dogs_vs_cats.py --data .gpu-data/train [--device cuda] [-- extra cnnlab train flags]
    python benchmarks/gpu_dogs_vs_cats.py --data DIR --device cpu --epochs 1 -- --batch-size 16   # a check on a CPU

Prints one JSON line (and writes it to ``--out``): device, images, epochs, seconds per epoch, images/s, time to
each target (centre crop, per epoch) and the final centre and 10-crop accuracy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from time_to_accuracy import read_run, time_to

TARGETS = (0.90, 0.9435, 0.96)


def pack(folder: Path, out: Path, max_mib: float) -> int:
    """Copy cats and dogs alternately (by sorted name) into ``out`` until ``max_mib`` is reached."""
    cats = sorted(folder.glob("cat.*.jpg"))
    dogs = sorted(folder.glob("dog.*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    budget, used, copied = max_mib * 2**20, 0, 0
    for cat, dog in zip(cats, dogs):
        size = cat.stat().st_size + dog.stat().st_size
        if used + size > budget:
            break
        for image in (cat, dog):
            shutil.copyfile(image, out / image.name)
        used, copied = used + size, copied + 2
    print(f"packed {copied:,} images ({used / 2**20:.1f} MiB) of {folder} into {out}")
    return copied


def train(args, extra: list[str]) -> dict:
    out_dir = Path(tempfile.mkdtemp(prefix="gpu-dogs-vs-cats-"))
    command = [
        sys.executable, "-m", "cnnlab", "train", "alexnet_bn", "--recipe", "challenge", "--seed", "42",
        "--data", str(args.data), "--device", args.device, "--out-dir", str(out_dir), "--name", "challenge",
        "--cache-dir", str(out_dir / "cache"), "--no-progress",
    ]  # fmt: skip
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    subprocess.run([*command, *extra], check=True)
    run = read_run(out_dir / "challenge")
    config = json.loads((out_dir / "challenge" / "config.json").read_text())
    environment = json.loads((out_dir / "challenge" / "environment.json").read_text())
    train_images = round(sum(1 for _ in args.data.iterdir()) * (1 - config["val_split"]))
    seconds = [b - a for (_, a, _), (_, b, _) in zip([(0, 0.0, 0)] + run["curve"][:-1], run["curve"])]
    reached = {f"{t:.4g}": time_to(run["curve"], t) for t in TARGETS}
    return {
        "device": environment.get("device"),
        "images": train_images,
        "epochs": len(seconds),
        "seconds_per_epoch": seconds,
        "images_per_second": [round(train_images / s, 1) for s in seconds],
        "seconds_to": {t: (None if hit is None else round(hit[1], 1)) for t, hit in reached.items()},
        "final": run.get("final"),
        "run": str(out_dir / "challenge"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--pack", type=Path, help="copy a subset of --folder that fits --max-mib into this folder, then stop"
    )
    p.add_argument("--folder", type=Path, default=Path("../shared/data/dogs-vs-cats-200px/train"))
    p.add_argument("--max-mib", type=float, default=56.0)
    p.add_argument("--data", type=Path, help="the image folder to train on")
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=0, help="instead of the recipe's (a check on a CPU: 1)")
    p.add_argument("--out", type=Path, help="also write the JSON here (e.g. $OUT/gpu_dogs_vs_cats.json)")
    args, extra = p.parse_known_args(argv)
    if args.pack:
        pack(args.folder, args.pack, args.max_mib)
        return 0
    if args.data is None:
        p.error("give --data FOLDER (or --pack DIR to prepare one)")
    result = train(args, [e for e in extra if e != "--"])
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
