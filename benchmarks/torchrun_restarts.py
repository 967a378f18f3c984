"""Does a killed process's restart under ``torchrun --max-restarts`` resume, or fail, or hang?

Each trial starts ``torchrun --standalone --nproc-per-node 2 --max-restarts 1 -m cnnlab train lenet5`` on 4,000
random 28x28 images, SIGKILLs local rank 1 once the first checkpoint exists, and waits. It counts as resumed when
torchrun ends with 0 and the log says "resuming from", failed when torchrun ends otherwise, hung when it is still
running after --hang-after seconds (then its processes are killed); a failure keeps its cause (the log's last
error line). Trials alternate between torchrun's default
(one store shared by all attempts) and ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (a fresh store per attempt, what
``cnnlab train --nproc N --max-restarts K`` sets). --hogs N busy processes load the cores meanwhile, as a busy
CI machine does; the race between a restarted process and the dead one's address in the store needs it.

    python benchmarks/torchrun_restarts.py [--trials 8] [--hogs 2] [--json benchmarks/results/torchrun_restarts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import numpy as np

from cnnlab.data.idx import write_idx
from cnnlab.environment import cpu_name
from cnnlab.train.distributed import FRESH_STORE_PER_ATTEMPT

SETTINGS = {"shared store (torchrun's default)": {}, "fresh store per attempt": FRESH_STORE_PER_ATTEMPT}


def random_mnist(root: Path) -> Path:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 4000), ("t10k", 200)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return root


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def local_rank(pid: int) -> int | None:
    with suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"LOCAL_RANK="):
                return int(item.split(b"=")[1])
    return None


def kill_tree(pid: int) -> None:
    """torchrun starts its processes in sessions of their own: a process group kill would miss them. The root
    goes first, so that a torchrun with a restart left starts no new ones."""
    tree, stack = [], [pid]
    while stack:
        tree.append(stack.pop())
        stack += children(tree[-1])
    for member in tree:
        with suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def last_error(log: str) -> str:
    """The restarted attempt's error: the last exception line of the processes (torchrun's own summary aside)."""
    errors = [line for line in log.splitlines() if re.match(r"[\w.]*Error: ", line) and "ChildFailedError" not in line]
    return errors[-1][:300] if errors else "(no error line)"


def trial(data: Path, out: Path, extra_env: dict, hang_after: float) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=1"]
    cmd += ["-m", "cnnlab", "train", "lenet5", "--data-dir", str(data), "--out-dir", str(out), "--name", "run"]
    cmd += ["--epochs", "3", "--batch-size", "64", "--no-progress", "--no-sample", "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k not in FRESH_STORE_PER_ATTEMPT}  # the setting is the trial's
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra_env})
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.time() + 240
            while not any((out / "run" / "checkpoints").glob("step-*")):
                if proc.poll() is not None or time.time() > deadline:
                    return {"outcome": "no checkpoint", "seconds_after_kill": None}
                time.sleep(0.05)
            victims = [p for p in children(proc.pid) if local_rank(p) == 1]
            if not victims:
                return {"outcome": "no rank 1 to kill", "seconds_after_kill": None}
            os.kill(victims[0], signal.SIGKILL)
            killed = time.time()
            try:
                rc = proc.wait(timeout=hang_after)
            except subprocess.TimeoutExpired:
                return {"outcome": "hung", "seconds_after_kill": round(time.time() - killed, 1)}
            seconds, text = round(time.time() - killed, 1), log.read_text()
            if rc != 0:
                return {"outcome": "failed", "seconds_after_kill": seconds, "cause": last_error(text)}
            outcome = "resumed" if "resuming from" in text else "finished without resuming"
            return {"outcome": outcome, "seconds_after_kill": seconds}
        finally:
            kill_tree(proc.pid)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="trials per setting (they alternate)")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes beside the run (default 2)")
    parser.add_argument("--hang-after", type=float, default=90.0, help="seconds after the kill that count as a hang")
    parser.add_argument("--json", type=Path, help="write the trials and counts here")
    args = parser.parse_args()

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    trials = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = random_mnist(Path(tmp) / "data")
            for i in range(args.trials):
                for name, extra_env in SETTINGS.items():
                    result = {
                        "setting": name,
                        "trial": i,
                        **trial(data, Path(tmp) / f"trial-{len(trials)}", extra_env, args.hang_after),
                    }
                    print(json.dumps(result), flush=True)
                    trials.append(result)
    finally:
        for hog in hogs:
            hog.kill()
    counts = {name: {} for name in SETTINGS}
    for t in trials:
        counts[t["setting"]][t["outcome"]] = counts[t["setting"]].get(t["outcome"], 0) + 1
    for name, c in counts.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if args.json:
        import torch

        record = {
            "what": "torchrun --max-restarts 1, 2 processes, local rank 1 SIGKILLed after the first checkpoint",
            "command": " ".join(["python", "benchmarks/torchrun_restarts.py", *sys.argv[1:]]),
            "trials_per_setting": args.trials,
            "hogs": args.hogs,
            "hang_after_s": args.hang_after,
            "torch": torch.__version__,
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "counts": counts,
            "trials": trials,
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
