"""LeNet-5 on MNIST: seconds to reach 98.5% test accuracy, cnnlab's defaults vs a plain PyTorch loop.

(a) the lesson's recipe as a straightforward PyTorch loop: batch 32, Adam 1e-3, PyTorch's default
    initialisation, pixels / 255, batches by indexing in-memory tensors (no DataLoader), the test set
    evaluated after every epoch;
(b) ``cnnlab train lenet5`` with its defaults (the library's ``fit`` with the registry's settings).

Both run in this process, back to back, on the same data and threads; the clock includes each epoch's
evaluation. Writes benchmarks/results/lenet5_mnist.{json,png}.

    python benchmarks/lenet5_mnist.py [--data-dir DIR] [--target 0.985] [--max-epochs 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import Callback, create_model, fit
from cnnlab.data import load_idx_dataset
from cnnlab.run import resolve_config

RESULTS = Path(__file__).resolve().parent / "results"


def plain_lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )  # fmt: skip


def plain_loop(train, test, target: float, max_epochs: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    x_train = train.images.float() / 255
    y_train = train.labels
    x_test, y_test = test.images.float() / 255, test.labels
    model = plain_lenet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve, reached = [], None
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
        elapsed = time.perf_counter() - start
        curve.append((elapsed, accuracy))
        print(f"  plain   epoch {epoch + 1}: {elapsed:6.1f}s  test accuracy {accuracy:.4f}", flush=True)
        if accuracy >= target:
            reached = elapsed
            break
    return {"curve": curve, "seconds_to_target": reached}


class _Clock(Callback):
    def __init__(self, target):
        self.target, self.curve, self.reached = target, [], None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.start
        self.curve.append((elapsed, logs["val_accuracy"]))
        print(f"  cnnlab  epoch {epoch + 1}: {elapsed:6.1f}s  test accuracy {logs['val_accuracy']:.4f}", flush=True)
        if self.reached is None and logs["val_accuracy"] >= self.target:
            self.reached = elapsed


def cnnlab_defaults(train, test, target: float) -> dict:
    cfg = resolve_config("lenet5", {"progress": False, "checkpoint_every": 0})
    torch.manual_seed(cfg.seed)
    clock = _Clock(target)
    history = fit(create_model("lenet5"), train, test, cfg, callbacks=[clock])
    return {
        "curve": clock.curve,
        "seconds_to_target": clock.reached,
        "final_accuracy": history["val_accuracy"][-1],
        "config": {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "optimizer", "schedule", "warmup")},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--max-epochs", type=int, default=10)
    args = parser.parse_args()
    train = load_idx_dataset("mnist", "train", args.data_dir)
    test = load_idx_dataset("mnist", "test", args.data_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; target {args.target:.1%}")
    print("(a) plain PyTorch loop, the lesson's recipe")
    plain = plain_loop(train, test, args.target, args.max_epochs)
    print("(b) cnnlab train lenet5, defaults")
    ours = cnnlab_defaults(train, test, args.target)
    ratio = (
        plain["seconds_to_target"] / ours["seconds_to_target"]
        if plain["seconds_to_target"] and ours["seconds_to_target"]
        else None
    )
    print(
        f"\nseconds to {args.target:.1%}: plain {plain['seconds_to_target']}, cnnlab {ours['seconds_to_target']}"
        + (f"  ->  cnnlab {ratio:.2f}x faster" if ratio else "")
    )
    print(f"cnnlab final test accuracy after {ours['config']['epochs']} epochs: {ours['final_accuracy']:.4f}")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "target": args.target,
        "plain": plain,
        "cnnlab": ours,
        "speedup": ratio,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (RESULTS / "lenet5_mnist.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "lenet5_mnist.png")
    print(f"wrote {RESULTS / 'lenet5_mnist.json'} and .png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in (("plain", "plain PyTorch loop (batch 32, Adam 1e-3)"), ("cnnlab", "cnnlab train lenet5")):
        seconds, accuracy = zip(*result[key]["curve"])
        ax.plot(seconds, accuracy, "o-", label=label)
    ax.axhline(result["target"], color="grey", ls="--", lw=1, label=f"target {result['target']:.1%}")
    ax.set_xlabel("wall-clock seconds (training + per-epoch evaluation)")
    ax.set_ylabel("MNIST test accuracy")
    ax.set_ylim(0.95, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if result["speedup"]:
        ax.set_title(f"LeNet-5: cnnlab reaches {result['target']:.1%} {result['speedup']:.2f}x sooner")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
