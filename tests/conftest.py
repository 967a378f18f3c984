"""Shared fixtures: real data from ../shared/data when present (tests that need it skip otherwise),
and small synthetic IDX datasets made on the spot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """One thread per pytest-xdist worker (make test starts one worker per CPU), for the worker and for the
    commands its tests start: two workers of two OpenMP threads each on two cores made the suite slower (on a
    quiet 2-core machine, 364 s with both workers at PyTorch's default against 311 s with one thread each). A
    value the user exported wins."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The test files that hold a test marked slow first, each whole and in its order: make test spreads tests
    over its workers in this order (pytest-xdist), so a long test that started last would leave the other
    workers idle while it ends; a file kept whole builds its module's fixtures once."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def shared_data_dir() -> Path | None:
    for candidate in (os.environ.get("CNNLAB_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist" / "t10k-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("real MNIST not found (../shared/data or CNNLAB_DATA)")
    return found


@pytest.fixture(scope="session")
def mnist(real_data_dir):
    from cnnlab.data import load_idx_dataset

    return (
        load_idx_dataset("mnist", "train", real_data_dir, download_missing=False),
        load_idx_dataset("mnist", "test", real_data_dir, download_missing=False),
    )


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class k is a bright horizontal bar at rows 2k+4..2k+6, plus noise: learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, 4:24] = 230
    return images, labels


def write_synthetic_mnist(root: Path, train: int = 600) -> Path:
    """A folder laid out like MNIST's (root/mnist/*.gz) holding a small synthetic dataset; returns root."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for split, n, seed in (("train", train, 1), ("t10k", 200, 2)):
        images, labels = synthetic_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def synthetic_mnist_dir(tmp_path) -> Path:
    return write_synthetic_mnist(tmp_path / "data")


@pytest.fixture
def synthetic_dataset():
    """(train, val) ArrayDatasets of synthetic_digits: 512 and 256 images."""
    import torch

    from cnnlab.data import ArrayDataset

    def make(n, seed):
        images, labels = synthetic_digits(n, seed)
        return ArrayDataset(
            torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
        )

    return make(512, 1), make(256, 2)


@pytest.fixture(scope="session")
def lenet_mnist_slice_run(tmp_path_factory, mnist):
    """A real LeNet-5 run trained for 2 epochs on 3,000 MNIST digits, shared by the look-inside tests."""
    from look_inside_runs import lenet_on_mnist_slice

    return lenet_on_mnist_slice(tmp_path_factory.mktemp("lenet-mnist-slice"), mnist)
