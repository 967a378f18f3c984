"""LeNet-5 on MNIST, time to accuracy: cnnlab vs a plain PyTorch loop vs the lesson's Keras code on Keras 3.

(a) the lesson's recipe as a straightforward PyTorch loop: batch 32, Adam 1e-3, PyTorch's default
    initialisation, pixels / 255, batches by indexing in-memory tensors (no DataLoader), the test set
    evaluated after every epoch;
(b) ``cnnlab train lenet5`` with its defaults (the library's ``fit`` with the registry's settings), or
    ``--cnnlab-epochs N`` of the same recipe (its schedule stretched to N epochs);
(c) the lesson's own Keras code (batch 32, Adam 1e-3, categorical cross-entropy, ``validation_data`` = the
    test set) on Keras 3 with ``KERAS_BACKEND=torch``: what a Keras user would try first in PyTorch land. It
    runs in its own environment (``benchmarks/.keras-torch-venv``, made once with torch 2.13.0 and keras;
    ``--keras-python`` to use another, ``--no-keras`` to skip), once, after the pairs.

(a) and (b) run in this process as ``--pairs`` back-to-back pairs (pair i: seed i for both), on the same
data and threads, each until it reaches the highest target or its last epoch; the clock includes each
epoch's evaluation. A speed claim is the range of the per-pair ratios. Writes
benchmarks/results/lenet5_mnist.{json,png}.

    python benchmarks/lenet5_mnist.py [--data-dir DIR] [--targets 0.985 0.99] [--pairs 3] [--max-epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from augment_mnist import KERAS_LENET, venv_python  # beside this script
from time_to_accuracy import time_to  # beside this script: curves are (epoch, seconds, accuracy)
from torch import nn

from cnnlab import Callback, create_model, fit
from cnnlab.data import load_idx_dataset
from cnnlab.data.datasets import locate
from cnnlab.run import resolve_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def plain_lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )  # fmt: skip


def seconds_to(curve: list, target: float) -> float | None:
    """The clock at the first evaluation at or above ``target`` (None: never reached)."""
    hit = time_to(curve, target)
    return hit[1] if hit else None


def plain_loop(train, test, stop_at: float, max_epochs: int, seed: int) -> list:
    torch.manual_seed(seed)
    x_train = train.images.float() / 255
    y_train = train.labels
    x_test, y_test = test.images.float() / 255, test.labels
    model = plain_lenet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve = []
    start = time.perf_counter()
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(len(y_train))
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        curve.append((epoch + 1, time.perf_counter() - start, accuracy))
        print(f"  plain   epoch {epoch + 1}: {curve[-1][1]:6.1f}s  test accuracy {accuracy:.4f}", flush=True)
        if accuracy >= stop_at:
            break
    return curve


class Clock(Callback):
    """Records (epoch, seconds since training began, val_accuracy) after each epoch; stops at ``stop_at``."""

    def __init__(self, stop_at, label="cnnlab"):
        self.stop_at, self.label, self.curve = stop_at, label, []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.curve.append((epoch + 1, time.perf_counter() - self.start, logs["val_accuracy"]))
        print(f"  {self.label}  epoch {epoch + 1}: {self.curve[-1][1]:6.1f}s  test accuracy {logs['val_accuracy']:.4f}")
        if logs["val_accuracy"] >= self.stop_at:
            self.model.stop_training = True


def cnnlab_run(train, test, stop_at: float, epochs: int | None, seed: int) -> tuple[list, dict]:
    cfg = resolve_config("lenet5", {"progress": False, "checkpoint_every": 0, "seed": seed, "epochs": epochs})
    torch.manual_seed(cfg.seed)
    clock = Clock(stop_at)
    fit(create_model("lenet5"), train, test, cfg, callbacks=[clock])
    return clock.curve, {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "optimizer", "schedule", "ema")}


KERAS_SNIPPET = (
    r"""
import os, sys, json, gzip, time
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras, torch
files, stop_at, max_epochs = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def idx(path, offset):
    data = open(path, "rb").read()
    return np.frombuffer(gzip.decompress(data) if path.endswith(".gz") else data, np.uint8, offset=offset)
x = idx(files[0], 16).reshape(-1, 28, 28, 1).astype("float32") / 255.0
y = keras.utils.to_categorical(idx(files[1], 8), 10)
xt = idx(files[2], 16).reshape(-1, 28, 28, 1).astype("float32") / 255.0
yt = keras.utils.to_categorical(idx(files[3], 8), 10)
keras.utils.set_random_seed(0)
"""
    + KERAS_LENET
    + r"""model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
class Clock(keras.callbacks.Callback):
    curve = []
    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.curve.append((epoch + 1, time.perf_counter() - self.start, float(logs["val_accuracy"])))
        print(f"  keras   epoch {epoch + 1}: {self.curve[-1][1]:6.1f}s  test accuracy {self.curve[-1][2]:.4f}",
              file=sys.stderr, flush=True)
        if self.curve[-1][2] >= stop_at:
            self.model.stop_training = True
model.fit(x, y, batch_size=32, epochs=max_epochs, validation_data=(xt, yt), callbacks=[Clock()], verbose=0)
print(json.dumps({"curve": Clock.curve, "keras": keras.__version__, "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "backend": keras.backend.backend()}))
"""
)


def keras_python(args) -> str | None:
    """The Python of an environment with Keras 3 and this torch, made once beside this script."""
    if args.no_keras:
        return None
    if args.keras_python:
        return args.keras_python
    torch_version = torch.__version__.split("+")[0]
    installs = [f"torch=={torch_version}"], ["keras", "numpy"]
    python = venv_python(HERE / ".keras-torch-venv", *installs, what=f"keras and torch {torch_version}")
    if python is None:
        print("the Keras run is skipped")
    return python


def keras_run(python: str, data_dir, stop_at: float, max_epochs: int) -> dict | None:
    files = [str(f) for split in ("train", "test") for f in locate("mnist", split, data_dir)]
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    command = [python, "-c", KERAS_SNIPPET, json.dumps(files), str(stop_at), str(max_epochs)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        print("the Keras run failed (its messages are above)")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio_range(pairs: list, target: float) -> list | None:
    ratios = []
    for pair in pairs:
        plain, ours = seconds_to(pair["plain"], target), seconds_to(pair["cnnlab"], target)
        if plain is None or ours is None:
            return None
        ratios.append(plain / ours)
    return [min(ratios), max(ratios)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.985, 0.99])
    parser.add_argument("--pairs", type=int, default=3, help="back-to-back (plain, cnnlab) pairs")
    parser.add_argument("--max-epochs", type=int, default=15, help="the plain loop's limit")
    parser.add_argument("--cnnlab-epochs", type=int, help="the recipe stretched to N epochs (default: its own)")
    parser.add_argument("--keras-python", help="a Python with keras and torch (default: made beside this script)")
    parser.add_argument("--keras-epochs", type=int, default=6, help="Keras' limit; it stops at the lowest target")
    parser.add_argument("--no-keras", action="store_true")
    args = parser.parse_args()
    train = load_idx_dataset("mnist", "train", args.data_dir)
    test = load_idx_dataset("mnist", "test", args.data_dir)
    stop_at = max(args.targets)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; targets {args.targets}")
    pairs = []
    for seed in range(args.pairs):
        print(f"pair {seed + 1}/{args.pairs}: (a) plain PyTorch loop, the lesson's recipe; (b) cnnlab train lenet5")
        if seed % 2 == 0:  # alternate which runs first, so neither always gets the cooler (or warmer) machine
            plain = plain_loop(train, test, stop_at, args.max_epochs, seed)
            ours, cnnlab_config = cnnlab_run(train, test, stop_at, args.cnnlab_epochs, seed)
        else:
            ours, cnnlab_config = cnnlab_run(train, test, stop_at, args.cnnlab_epochs, seed)
            plain = plain_loop(train, test, stop_at, args.max_epochs, seed)
        pairs.append({"seed": seed, "plain": plain, "cnnlab": ours})
    keras = None
    if python := keras_python(args):
        print("(c) the lesson's Keras code on Keras 3, KERAS_BACKEND=torch")
        keras = keras_run(python, args.data_dir, min(args.targets), args.keras_epochs)
    result = {
        "targets": args.targets,
        "pairs": pairs,
        "speedup_range": {str(t): ratio_range(pairs, t) for t in args.targets},
        "cnnlab_config": cnnlab_config,
        "keras": keras,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print()
    for target in args.targets:
        plain = [seconds_to(p["plain"], target) for p in pairs]
        ours = [seconds_to(p["cnnlab"], target) for p in pairs]
        line = f"seconds to {target:.1%}: plain {fmt(plain)}, cnnlab {fmt(ours)}"
        if span := result["speedup_range"][str(target)]:
            line += f"  ->  cnnlab {span[0]:.2f}-{span[1]:.2f}x sooner"
        if keras and target == min(args.targets):  # Keras runs only to the lowest target: it is slow
            line += f"; Keras 3 (torch) {fmt([seconds_to(keras['curve'], target)])}"
        print(line)
    if keras:
        per_epoch = keras["curve"][-1][1] / len(keras["curve"])  # the clock starts at 0 and is cumulative
        print(f"Keras 3 {keras['keras']} on torch {keras['torch']}: {per_epoch:.1f} s per epoch")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lenet5_mnist.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "lenet5_mnist.png")
    print(f"wrote {RESULTS / 'lenet5_mnist.json'} and .png")


def fmt(seconds: list) -> str:
    return ", ".join("never" if s is None else f"{s:.1f}" for s in seconds)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = (("plain", "C0", "plain PyTorch loop (batch 32, Adam 1e-3)"), ("cnnlab", "C1", "cnnlab train lenet5"))
    for key, colour, label in styles:
        for i, pair in enumerate(result["pairs"]):
            _, seconds, accuracy = zip(*pair[key])
            ax.plot(seconds, accuracy, "o-", color=colour, alpha=0.8, ms=3, label=label if i == 0 else None)
    if result["keras"]:
        _, seconds, accuracy = zip(*result["keras"]["curve"])
        ax.plot(seconds, accuracy, "s-", color="C2", ms=3, label="the lesson's Keras code, Keras 3 on torch")
    for target in result["targets"]:
        ax.axhline(target, color="grey", ls="--", lw=1)
    ax.set_xlabel("wall-clock seconds (training + per-epoch evaluation)")
    ax.set_ylabel("MNIST test accuracy")
    ax.set_ylim(0.96, 0.995)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    span = result["speedup_range"][str(result["targets"][0])]
    if span:
        ax.set_title(f"LeNet-5: cnnlab reaches {result['targets'][0]:.1%} {span[0]:.1f}-{span[1]:.1f}x sooner")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
