"""LeNet-5 on a GPU: wall-clock seconds to 99.0% MNIST test accuracy with cnnlab's ``fit``.

Prepared for a lent GPU machine (one short run measures every variant). What makes the GPU path fast is
already in ``fit``: MNIST is moved to the GPU once, as uint8 (the in-memory loader), batches are cut and
normalised there, the lesson's augmentation (``--augment``) runs there, the loss is checked without a
sync each step, and the whole test set is one evaluation batch. The variants scale the batch (Adam's
learning rate by the square root of the batch ratio) and add ``torch.compile``; each trains until the
target or its last epoch, and its clock (``Clock``, from ``lenet5_mnist.py``) includes compilation and
the per-epoch evaluation. ``--device cpu --epochs 1`` checks the script on a machine without a GPU.

    python benchmarks/gpu_lenet5.py [--target 0.99] [--epochs 10] [--augment] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from lenet5_mnist import Clock, seconds_to

from cnnlab import create_model, fit
from cnnlab.augment import Augment
from cnnlab.data import load_idx_dataset
from cnnlab.run import resolve_config

# (batch, torch.compile): the recipe's batch first, then larger ones that fill the GPU better.
VARIANTS = [(128, False), (512, False), (512, True), (2048, True)]


def run(train, test, batch: int, compiled: bool, args) -> dict:
    base = resolve_config("lenet5")
    lr = base.lr * math.sqrt(batch / base.batch_size)
    cfg = resolve_config(
        "lenet5",
        {
            "device": args.device,
            "batch_size": batch,
            "lr": lr,
            "compile": compiled,
            "epochs": args.epochs,
            "eval_batch_size": len(test),
            "progress": False,
            "checkpoint_every": 0,
        },
    )
    torch.manual_seed(cfg.seed)
    clock = Clock(args.target, label=f"batch {batch}{' compiled' if compiled else ''}")
    fit(create_model("lenet5"), train, test, cfg, callbacks=[clock], augment=Augment.lesson() if args.augment else None)
    return {
        "batch": batch,
        "lr": lr,
        "compile": compiled,
        "curve": clock.curve,
        "seconds_to_target": seconds_to(clock.curve, args.target),
        "first_epoch_seconds": clock.curve[0][1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--epochs", type=int, default=10, help="each variant's schedule (it stops at the target)")
    parser.add_argument("--augment", action="store_true", help="the lesson's augmentation, on the GPU")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu_lenet5.json"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_lenet5.py needs a CUDA GPU (or --device cpu to check the script)")
    train = load_idx_dataset("mnist", "train", args.data_dir)
    test = load_idx_dataset("mnist", "test", args.data_dir)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    results = {"device": name, "torch": torch.__version__, "target": args.target, "augment": args.augment}
    results["runs"] = [run(train, test, batch, compiled, args) for batch, compiled in VARIANTS]
    for r in results["runs"]:
        reached = r["seconds_to_target"]
        print(
            f"batch {r['batch']:5d} lr {r['lr']:.4f} compile={r['compile']!s:5}: "
            + (f"{reached:.2f} s to {args.target:.1%}" if reached else f"never reached {args.target:.1%}")
            + f" (first epoch {r['first_epoch_seconds']:.2f} s)"
        )
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"{name}; wrote {args.out}")


if __name__ == "__main__":
    main()
