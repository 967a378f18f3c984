"""Small real runs for the look-inside tests (test_explain.py, test_demo.py), made with `cnnlab train`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.cli import main
from cnnlab.data.idx import write_idx


def lenet_on_mnist_slice(root: Path, mnist, train_images: int = 3000) -> Path:
    """LeNet-5 trained for 2 epochs on the first ``train_images`` real MNIST digits (~90%, 15 s on 2 cores)."""
    train, test = mnist
    folder = root / "data" / "mnist"
    folder.mkdir(parents=True)
    for split, data, n in (("train", train, train_images), ("t10k", test, 500)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", data.images[:n, 0].numpy())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", data.labels[:n].numpy().astype(np.uint8))
    out = root / "runs"
    args = ["train", "lenet5", "--data-dir", str(root / "data"), "--out-dir", str(out), "--name", "lenet"]
    assert main([*args, "--epochs", "2", "--no-progress", "--no-sample", "--seed", "0"]) == 0
    return out / "lenet"


def lenet_on_photos(root: Path, photos: Path, per_class: int = 40) -> Path:
    """An image-folder run: LeNet-5 in colour on 28x28 centre crops of a few Dogs vs. Cats photos, one epoch
    (it learns next to nothing: what matters is that it is an image-folder run)."""
    folder = root / "photos"
    folder.mkdir(parents=True)
    for animal in ("cat", "dog"):
        for i in range(per_class):
            (folder / f"{animal}.{i}.jpg").symlink_to(photos / f"{animal}.{i}.jpg")
    out = root / "runs"
    args = ["train", "lenet5", "--data", str(folder), "--out-dir", str(out), "--name", "photos", "--seed", "0"]
    args += ["--image-size", "32", "--crop", "28", "--epochs", "1", "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    return out / "photos"
