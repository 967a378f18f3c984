"""The data interface: the only thing training, evaluation and inference know about data.

A ``DataSource`` (below) holds three splits and answers every question a run asks of them. A kind of data is
one class that also answers, as class methods, how it is found and read back:

    kind                                  its name in ``describe()["kind"]``
    caches                                whether it decodes images into a cache (``--cache-dir``)
    opens(cfg)                            whether a training configuration names data of this kind
    open(cfg, allow_sample, echo, training)
                                          the source it names (``training`` False: only its "test" split is read)
    for_evaluation(path, description, classes, cache_dir, echo)
                                          new labelled data at ``path``, prepared as ``description`` says
    file_reader(description, invert)      path -> uint8 (C, H, W) model input

and is made known with ``@register``. The kinds: ``ArraySource`` (in-memory arrays; the Python API's
``fit((x, y))``) and ``IdxSource`` (MNIST, Fashion-MNIST) in ``arrays.py``, ``FolderSource`` (image folders,
decoded once into a cache) in ``imagedata.py``; the package imports them, so they are registered before any
question is asked. This module imports none of them: a new kind is one class and one ``@register``.
"""

from __future__ import annotations

import inspect
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
    """Splits "train", "val" and "test" (for an image folder "test" is "val")."""

    name: str  # "mnist", "dogs-vs-cats-small/train", "arrays"
    classes: tuple[str, ...]
    image_size: tuple[int, int, int]  # the model's input (C, H, W)
    notes: list[str]  # what a person should know: held-out splits, fallbacks, files left out
    skipped: list[str]  # files that could not be read, one message each

    def size(self, split: str) -> int: ...  # how many images
    def labels(self, split: str) -> torch.Tensor: ...  # their labels, CPU int64
    # Batches of uint8 (N, C, H, W) images and labels on the device: training order and augmentation-free crops
    # from (seed, epoch, step), this process's rows of each global batch (see loader.Shard).
    def loader(
        self, split: str, batch_size: int, device, *, train: bool = False, seed: int = 0, shard=ONE_PROCESS, view=None
    ) -> Loader: ...
    def images(self, split: str, positions) -> torch.Tensor: ...  # uint8, as the model sees them (centre view)
    def input_norm(self) -> InputNorm: ...  # the per-channel mean/std the model's input is normalised with
    # A JSON dict saved in model.json: how a file becomes input, so that ``read_file(description)`` prepares
    # images as training did.
    def describe(self) -> dict: ...
    # {report name: views averaged}: {"": ("full",)} for arrays, {"centre crop": ("centre",), "10-crop": (ten
    # views)} for folders.
    def eval_views(self) -> dict[str, tuple[str, ...]]: ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")


def split_of(splits: dict, split: str, name: str):
    """``splits[split]`` of the data called ``name``, refused in one wording for every kind when it has none."""
    check_split(split)
    if splits[split] is None:
        raise UsageError(f"{name}: no {split!r} split")
    return splits[split]


KINDS: dict[str, type] = {}  # kind name -> its class, in the order registered
KIND_METHODS = ("opens", "open", "for_evaluation", "file_reader")


def register(cls: type) -> type:
    """Class decorator: ``cls`` becomes a kind of data, found by its ``kind``."""
    missing = [name for name in KIND_METHODS if not callable(getattr(cls, name, None))]
    if not isinstance(getattr(cls, "caches", None), bool):
        missing.append("caches (True or False)")
    if "open" not in missing:
        try:  # as open_source calls it: by position, so the names are the kind's own (*args will do)
            inspect.signature(cls.open).bind("cfg", True, print, True)
        except TypeError:
            missing.append("open's training argument: open(cfg, allow_sample, echo, training)")
    if missing:
        raise TypeError(f"{cls.__name__} cannot be a kind of data: it lacks {', '.join(missing)}")
    KINDS[cls.kind] = cls
    return cls


def kind_of(description: dict) -> type:
    kind = description.get("kind")
    if kind not in KINDS:
        raise UsageError(f"unknown data kind {kind!r} in the run's model.json; known: {', '.join(KINDS)}")
    return KINDS[kind]


def open_source(cfg, allow_sample: bool = True, echo=print, training: bool = True) -> DataSource:
    """The source a training configuration names (an image folder, an IDX dataset, ...); ``training`` False
    when only its "test" split is used (a kind may then leave the others unread)."""
    for cls in reversed(KINDS.values()):  # the newest first: a new kind may claim what an older one would take
        if cls.opens(cfg):
            return cls.open(cfg, allow_sample, echo, training)
    raise UsageError(f"no kind of data ({', '.join(KINDS)}) opens dataset {cfg.dataset!r} with data {cfg.data!r}")


def open_eval_source(path: str | Path, description: dict, classes, cache_dir=None, echo=print) -> DataSource:
    """New labelled data to evaluate a trained run on, prepared as the run's training data was."""
    return kind_of(description).for_evaluation(Path(path), description, classes, cache_dir, echo)


def read_file(description: dict, invert: str = "auto") -> Callable[[str | Path], torch.Tensor]:
    """path -> uint8 (C, H, W) model input, as the source that ``describe()``d itself prepared its images."""
    return kind_of(description).file_reader(description, invert)
