"""AlexNet-BN training throughput at 227x227 on this machine: cnnlab's defaults vs a plain fp32 PyTorch loop,
back to back, and the image pipeline alone (decode + cache + crops), cold and warm.

(a) plain loop: fp32, channels-last, Adam 1e-3, batch 32, the L2 penalty added to the loss as a Keras port
    writes it (0.0002 * sum(w^2) over the kernels), random input already in memory (no pipeline);
(b) cnnlab: ``fit``'s step with the registry's defaults for alexnet_bn (bf16 autocast,
    channels-last, fused Adam with the L2 penalty as per-group weight decay, glibc keeping freed memory for
    reuse as ``fit`` does: ``environment.reuse_freed_memory``), same random data in memory;
(c) the same step without ``reuse_freed_memory``, alternated with (b) --pairs times, each in a fresh process
    (mallopt leaves glibc's mmap threshold fixed after it, so a later "without" in the same process would not
    be glibc's default): the allocator's share.
Then the pipeline on a folder of JPEGs (../shared/data/dogs-vs-cats-small/train by default): decoding into
a fresh cache (cold), opening the cache again (warm), and cutting random 227x227 crops (batches/s).

    python benchmarks/alexnet_throughput.py [--steps 6] [--folder DIR] [--threads N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.data.cache import open_cache
from cnnlab.data.folders import scan_folder
from cnnlab.data.imagedata import CropLoader, FolderSplit
from cnnlab.environment import cpu_name, reuse_freed_memory
from cnnlab.run import resolve_config
from cnnlab.train.loop import make_optimizer
from cnnlab.train.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "dogs-vs-cats-small" / "train"


def images_per_second(step, batch: int, steps: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels on the first call
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def plain_loop(steps: int, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = create_model("alexnet_bn").to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 227, 227).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y) + model.regularization_loss_with_grad()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return images_per_second(step, batch, steps)


def cnnlab_defaults(steps: int, keep_freed_memory: bool = True) -> tuple[float, dict]:
    cfg = resolve_config("alexnet_bn")
    runtime = Runtime("cpu", cfg.precision)
    torch.manual_seed(0)
    model = create_model("alexnet_bn").to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, cfg)
    x = torch.randn(cfg.batch_size, 3, 227, 227).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (cfg.batch_size,))

    def step():
        with runtime.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    settings = {"batch_size": cfg.batch_size, "precision": cfg.precision, "optimizer": cfg.optimizer}
    with reuse_freed_memory() if keep_freed_memory else contextlib.nullcontext():
        return images_per_second(step, cfg.batch_size, steps), settings


def pipeline(folder: Path, batch: int = 64) -> dict:
    listing = scan_folder(folder)
    cache_root = Path(tempfile.mkdtemp(prefix="cnnlab-bench-cache-"))
    try:
        start = time.perf_counter()
        cache = open_cache(listing, 256, cache_root, progress=False, echo=lambda *a: None)
        cold = len(cache.files) / (time.perf_counter() - start)
        start = time.perf_counter()
        cache = open_cache(listing, 256, cache_root, progress=False, echo=lambda *a: None)
        warm_open = time.perf_counter() - start
        split = FolderSplit(cache, np.arange(len(cache.files)), cache.labels)
        loader = CropLoader(split, 227, batch, "cpu", train=True, seed=0)
        start = time.perf_counter()
        n = sum(len(images) for images, _ in loader.epoch(0))
        crops = n / (time.perf_counter() - start)
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    return {
        "images": len(listing.files),
        "cold_decode_images_per_s": cold,
        "warm_open_seconds": warm_open,
        "crops_images_per_s": crops,
    }


def fresh_process_step(steps: int, keep_freed_memory: bool, threads: int) -> float:
    """(b) or (c) in a new Python process: glibc's malloc as a process starts with it."""
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import alexnet_throughput as b; "
        "torch.set_num_threads(int(sys.argv[4])) if int(sys.argv[4]) else None; "
        "print(b.cnnlab_defaults(int(sys.argv[2]), sys.argv[3] == 'keep')[0])"
    )
    args = [str(Path(__file__).parent), str(steps), "keep" if keep_freed_memory else "plain", str(threads)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--pairs", type=int, default=3, help="(b)/(c) pairs, back to back")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS / "alexnet_throughput.json")
    parser.add_argument("--plot", type=Path, nargs="+", metavar="RESULT.json", help="only draw these results")
    args = parser.parse_args()
    if args.plot:
        plot([json.loads(f.read_text()) for f in args.plot], args.out.with_suffix(".png"))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_has_amx": "amx_bf16" in cpu_flags(),
        "cpu_has_avx512_bf16": "avx512_bf16" in cpu_flags(),
    }
    result["plain_fp32_images_per_s"] = plain_loop(args.steps)
    print(f"plain fp32 loop (batch 32): {result['plain_fp32_images_per_s']:.1f} img/s", flush=True)
    result["cnnlab_images_per_s"], result["cnnlab_settings"] = cnnlab_defaults(args.steps)
    print(f"cnnlab defaults {result['cnnlab_settings']}: {result['cnnlab_images_per_s']:.1f} img/s", flush=True)
    result["speedup"] = result["cnnlab_images_per_s"] / result["plain_fp32_images_per_s"]
    print(f"speed-up: {result['speedup']:.2f}x")
    result["allocator_pairs"] = []
    for _ in range(args.pairs):  # the allocator setting's share: with / without, back to back, fresh processes
        pair = [fresh_process_step(args.steps, keep, args.threads) for keep in (True, False)]
        result["allocator_pairs"].append(pair)
        print(f"with / without reuse_freed_memory: {pair[0]:.1f} / {pair[1]:.1f} img/s ({pair[0] / pair[1]:.2f}x)")
    if args.folder.is_dir():
        result["pipeline"] = pipeline(args.folder)
        p = result["pipeline"]
        print(
            f"pipeline on {p['images']} JPEGs: cold decode {p['cold_decode_images_per_s']:.0f} img/s, warm open "
            f"{p['warm_open_seconds'] * 1000:.0f} ms, random 227x227 crops {p['crops_images_per_s']:.0f} img/s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot([result], args.out.with_suffix(".png"))
    print(f"wrote {args.out} and its .png")


def plot(results: list[dict], path: Path) -> None:
    """Plain fp32 loop vs cnnlab, images/s, one pair of bars per measured machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 1.1 * len(results)))
    labels = []
    for i, r in enumerate(results):
        cpu = r.get("cpu", "unknown CPU")
        labels.append(
            f"{cpu}\n{r['threads']} threads{', AMX' if r.get('cpu_has_amx') else ', no AMX'}, torch {r['torch']}"
        )
        for offset, key, colour, name in (
            (-0.2, "plain_fp32_images_per_s", "#999999", "plain fp32 loop (batch 32)"),
            (0.2, "cnnlab_images_per_s", "#4C72B0", "cnnlab defaults (bf16, batch 64)"),
        ):
            ax.barh(i + offset, r[key], height=0.38, color=colour, label=name if i == 0 else None)
            note = f" {r[key]:.1f}" + (f"  ({r['speedup']:.2f}x)" if key.startswith("cnnlab") else "")
            ax.text(r[key], i + offset, note, va="center", fontsize=9)
    ax.set_yticks(range(len(results)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(r["cnnlab_images_per_s"] for r in results) * 1.4)
    ax.set_xlabel("alexnet_bn training images/s at 227x227 (CPU)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cpu_flags() -> str:
    try:
        return next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
