"""Training step time on this machine: 2 processes x 1 thread (torchrun + DDP, gloo) vs 1 process x 2 threads.

Tells users when processes pay on a CPU. Each configuration trains with ``cnnlab.fit`` (the same global batch,
the models' recipe settings) on random images held in memory; a callback notes the clock after every step and
the median step time after a warm-up is reported. The two run back to back in alternating pairs; the ratio
is per pair, reported as a range.

    python benchmarks/distributed_step_time.py [--pairs 3] [--models lenet5 alexnet_bn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {  # global batch, timed steps, warm-up steps, precision
    "lenet5": (128, 60, 10, "fp32"),
    "alexnet_bn": (32, 8, 2, "bf16"),
}


def worker(model_name: str, threads: int, out: Path) -> None:
    """One configuration's run (one process, or one of torchrun's): median seconds per step."""
    import torch

    from cnnlab import Callback, TrainConfig, create_model, fit
    from cnnlab.data import ArrayDataset, ArraySource
    from cnnlab.models import get_model_entry

    batch, steps, warm, precision = SETTINGS[model_name]
    c, h, w = get_model_entry(model_name).input_size
    g = torch.Generator().manual_seed(0)
    n = batch * (steps + warm)
    images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    data = ArrayDataset(images, labels, ("a", "b"))

    class Clock(Callback):
        def __init__(self):
            self.times = []

        def on_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    clock = Clock()
    cfg = TrainConfig(
        model=model_name, epochs=1, batch_size=batch, threads=threads, precision=precision, progress=False, ema=0.0
    )
    torch.manual_seed(0)
    fit(create_model(model_name, num_classes=2), ArraySource(data), None, cfg, [clock])
    step_times = [b - a for a, b in zip(clock.times[warm - 1 :], clock.times[warm:])]
    if int(os.environ.get("RANK", 0)) == 0:
        out.write_text(json.dumps({"median_step_s": statistics.median(step_times), "steps": len(step_times)}))


def run(model_name: str, processes: int, out: Path) -> float:
    script = [str(Path(__file__).resolve()), "--worker", model_name, "--out", str(out)]
    if processes == 1:
        cmd = [sys.executable, *script, "--threads", "2"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd += [*script, "--threads", "1"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())["median_step_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "distributed_step_time.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.threads, args.out)

    import torch

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"cnnlab-step-time-{os.getpid()}.json"
    from cnnlab.environment import cpu_name

    result = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__}
    for model_name in args.models:
        pairs = []
        for _ in range(args.pairs):
            one = run(model_name, 1, tmp)
            two = run(model_name, 2, tmp)
            pairs.append({"1x2_threads_s": one, "2x1_thread_s": two, "speedup_of_processes": one / two})
            print(
                f"{model_name}: 1 process x 2 threads {one * 1e3:.1f} ms/step, 2 processes x 1 thread "
                f"{two * 1e3:.1f} ms/step: {one / two:.2f}x",
                flush=True,
            )
        ratios = [p["speedup_of_processes"] for p in pairs]
        result[model_name] = {"batch": SETTINGS[model_name][0], "pairs": pairs, "range": [min(ratios), max(ratios)]}
        print(f"{model_name}: 2 processes vs 1 (2 threads): {min(ratios):.2f}-{max(ratios):.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
