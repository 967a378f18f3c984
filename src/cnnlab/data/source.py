"""The data interface: the only thing training, evaluation and inference know about data.

A ``DataSource`` holds three splits ("train", "val", "test"; for an image folder "test" is "val") and
answers every question a run asks of them:

    size(split), labels(split)            how many images, and their labels (CPU int64)
    loader(split, batch_size, device, *, train, seed, shard, view)
                                          batches of uint8 (N, C, H, W) images and labels on the device:
                                          training order and augmentation-free crops from (seed, epoch, step),
                                          this process's rows of each global batch (see loader.Shard)
    images(split, positions)              uint8 images as the model sees them (centre view), for pictures
    input_norm()                          the per-channel mean/std the model's input is normalised with
    describe()                            a JSON dict saved in model.json: how a file becomes input, so that
                                          ``read_file(description, path)`` prepares images as training did
    eval_views()                          {report name: views averaged}: {"": ("full",)} for arrays,
                                          {"centre crop": ("centre",), "10-crop": (ten views)} for folders

Implementations: ``ArraySource`` (in-memory arrays; the Python API's ``fit((x, y))``), ``IdxSource``
(MNIST, Fashion-MNIST) in ``arrays.py``, and ``FolderSource`` (image folders, decoded once into a cache)
in ``imagedata.py``. ``open_source`` picks one from a configuration; nothing else branches on the kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from ..errors import UsageError
from .loader import ONE_PROCESS, InputNorm

SPLITS = ("train", "val", "test")


class Loader(Protocol):
    def __len__(self) -> int: ...  # batches in an epoch, for this process

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def global_batch_len(self, step: int) -> int: ...  # training: images in global batch ``step``


@runtime_checkable
class DataSource(Protocol):
    name: str  # "mnist", "dogs-vs-cats-small/train", "arrays"
    classes: tuple[str, ...]
    image_size: tuple[int, int, int]  # the model's input (C, H, W)
    notes: list[str]  # what a person should know: held-out splits, fallbacks
    skipped: list[str]  # files that could not be read, one message each

    def size(self, split: str) -> int: ...

    def labels(self, split: str) -> torch.Tensor: ...

    def loader(
        self, split: str, batch_size: int, device, *, train: bool = False, seed: int = 0, shard=ONE_PROCESS, view=None
    ) -> Loader: ...

    def images(self, split: str, positions) -> torch.Tensor: ...

    def input_norm(self) -> InputNorm: ...

    def describe(self) -> dict: ...

    def eval_views(self) -> dict[str, tuple[str, ...]]: ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")


def open_source(cfg, allow_sample: bool = True, echo=print) -> DataSource:
    """The source a training configuration names: an image folder (``cfg.data``) or an IDX dataset."""
    if cfg.data:
        from .imagedata import FolderSource

        return FolderSource.open(cfg, echo)
    from .arrays import IdxSource

    return IdxSource.open(cfg, allow_sample)


def open_eval_source(path: str | Path, description: dict, classes, cache_dir=None, echo=print) -> DataSource:
    """New labelled data to evaluate a trained run on, prepared as the run's training data was: a folder of
    images (Kaggle names or class subfolders), or for grey-array runs also a folder of MNIST-style IDX files."""
    from .arrays import ArraySource, IdxSource
    from .imagedata import FolderSource

    path = Path(path)
    if description.get("kind") == "folder":
        return FolderSource.for_evaluation(path, description, classes, cache_dir, echo)
    if IdxSource.holds_idx(path):
        return IdxSource.from_folder(path, description, classes)
    return ArraySource.from_image_folder(path, description, classes)


def read_file(description: dict, invert: str = "auto") -> Callable[[str | Path], torch.Tensor]:
    """path -> uint8 (C, H, W) model input, as the source that ``describe()``d itself prepared its images."""
    from .arrays import ArraySource
    from .imagedata import FolderSource

    kind = description.get("kind")
    if kind == "folder":
        return FolderSource.file_reader(description)
    if kind in ("idx", "array"):
        return ArraySource.file_reader(description, invert)
    raise UsageError(f"unknown data kind {kind!r} in the run's model.json")
