"""Image folders as a data source: crops of cached pixels, batched off the main thread.

The lesson's book recipe (AlexNet on Dogs vs. Cats): images cached at 256x256, the training set's
per-channel mean subtracted, random 227x227 crops with horizontal flips for training, the centre crop for
validation, and 10-crop over-sampling (four corners and the centre, and their mirrors) for evaluation.
Batches are cut from the memory-mapped cache on a background thread while the model computes, travel to
the device as uint8 (a quarter of float32's bytes) and are converted there.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .cache import ImageCache, open_cache
from .datasets import check_split_sizes, stratified_split
from .folders import FolderError, decode, files_identity, folder_label, scan_folder, scan_labelled
from .loader import ONE_PROCESS, InputNorm, epoch_order, epoch_seed
from .source import check_split, register, split_of

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
TEN_VIEWS = tuple(f"{corner}{mirror}" for corner in CORNERS for mirror in ("", "-mirrored"))


def view_window(view: str, size: int, crop: int) -> tuple[int, int, bool]:
    """(top, left, mirrored) of a named evaluation view of a ``size`` image."""
    corner, mirrored = view.removesuffix("-mirrored"), view.endswith("-mirrored")
    far, mid = size - crop, (size - crop) // 2
    offsets = {"top-left": (0, 0), "top-right": (0, far), "bottom-left": (far, 0), "bottom-right": (far, far)}
    top, left = offsets.get(corner, (mid, mid))
    if corner not in offsets and corner != "centre":
        raise UsageError(f"unknown view {view!r}; views: {', '.join(TEN_VIEWS)}")
    return top, left, mirrored


def _check_readable(cache: ImageCache, folder, every_class: bool = False) -> None:
    """Refuse a folder whose files did not decode: all of them, or (to train on) all of one class, which would
    train without it and report an accuracy over the others."""
    counts = np.bincount(cache.labels, minlength=len(cache.classes)) if every_class else []
    empty = [c for c, n in zip(cache.classes, counts) if n == 0]
    if not len(cache.files) or empty:
        what = f"no readable images of class {', '.join(empty)}" if len(cache.files) else "no readable images"
        raise FolderError(f"{folder}: {what}; the first of {len(cache.skipped)} unreadable: {cache.skipped[0]}")


@dataclass
class FolderSplit:
    cache: ImageCache
    indices: np.ndarray  # which cached images belong to this split
    labels: np.ndarray  # their labels, in the run's class order


@register
class FolderSource:
    kind = "folder"
    caches = True

    def __init__(self, splits: dict, classes, crop: int, name: str, notes=(), skipped=(), identity=None):
        self.splits = {"train": splits.get("train"), "val": splits.get("val"), "test": splits.get("test")}
        self.classes = tuple(classes)
        self.crop = crop
        self.image_size = (3, crop, crop)
        self.name = name
        self.notes = list(notes)
        self.skipped = list(skipped)
        self.identity = identity  # training's files_identity, in model.json: a resume finds the run's files moved

    # --- opening ---------------------------------------------------------------------------------------
    @classmethod
    def opens(cls, cfg) -> bool:
        return bool(cfg.data)

    @classmethod
    def open(cls, cfg, allow_sample: bool = True, echo=print, training: bool = True) -> FolderSource:
        """``cfg.data`` decoded once into the cache; validation from ``cfg.val_dir`` or a stratified split. Not
        ``training`` (evaluate), ``cfg.val_dir`` alone is read: the test split needs no training folder or its cache."""
        if cfg.val_dir and not training:
            listing = scan_folder(cfg.val_dir)
            cache = open_cache(listing, cfg.image_size, cfg.cache_dir, progress=cfg.progress, echo=echo)
            _check_readable(cache, cfg.val_dir)
            test = FolderSplit(cache, np.arange(len(cache.files)), cache.labels)
            notes = [note for note in (listing.ignored_note(),) if note]
            return cls({"val": test, "test": test}, listing.classes, cfg.crop, str(cfg.val_dir), notes, cache.skipped)
        listing = scan_folder(cfg.data)
        notes = [
            f"{listing.root}: {len(listing.files):,} images, classes {', '.join(listing.classes)} "
            f"({listing.layout} layout)"
        ]
        fraction = cfg.val_split or 0.1
        split = f"{cfg.data}: --val-split {fraction:g}" + ("" if cfg.val_split else " (the default for image folders)")
        val_listing = scan_folder(cfg.val_dir) if cfg.val_dir else None
        if val_listing:
            if val_listing.classes != listing.classes:
                differ = f"classes {val_listing.classes} differ from {listing.classes} in {cfg.data}"
                raise FolderError(f"{cfg.val_dir}: {differ}")
            check_disjoint(listing, val_listing)
        else:
            check_split_sizes(np.asarray(listing.labels), fraction, listing.classes, split)  # before decoding
        notes += [note for note in (listing.ignored_note(), val_listing and val_listing.ignored_note()) if note]
        cache = open_cache(listing, cfg.image_size, cfg.cache_dir, progress=cfg.progress, echo=echo)
        _check_readable(cache, cfg.data, every_class=True)
        skipped = list(cache.skipped)
        if cfg.val_dir:
            val_cache = open_cache(val_listing, cfg.image_size, cfg.cache_dir, progress=cfg.progress, echo=echo)
            _check_readable(val_cache, cfg.val_dir)
            train = FolderSplit(cache, np.arange(len(cache.files)), cache.labels)
            val = FolderSplit(val_cache, np.arange(len(val_cache.files)), val_cache.labels)
            skipped += val_cache.skipped
        else:
            keep, held = stratified_split(torch.from_numpy(cache.labels), fraction, cfg.seed, listing.classes, split)
            keep, held = keep.numpy(), held.numpy()
            train = FolderSplit(cache, keep, cache.labels[keep])
            val = FolderSplit(cache, held, cache.labels[held])
            notes.append(f"validation: {len(held):,} images held out ({fraction:.0%}, stratified, seed {cfg.seed})")
        if skipped:
            notes.append(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped))
        if len(train.indices) < 2:
            raise FolderError(f"{cfg.data}: too few readable images to train on ({len(train.indices)})")
        name = folder_label(cfg.data)
        identity = files_identity(listing, val_listing)
        return cls({"train": train, "val": val, "test": val}, listing.classes, cfg.crop, name, notes, skipped, identity)

    @classmethod
    def for_evaluation(cls, folder, description: dict, classes, cache_dir=None, echo=print) -> FolderSource:
        """A labelled folder, every image in the "test" split, labels in the run's class order."""
        listing = scan_labelled(folder, classes, echo)
        cache = open_cache(listing, description["image_size"], cache_dir, echo=echo)
        _check_readable(cache, folder)
        labels = np.array([classes.index(name) for name in cache.classes], dtype=np.int64)[cache.labels]
        split = FolderSplit(cache, np.arange(len(cache.files)), labels)
        return cls({"test": split, "val": split}, classes, description["crop"], str(folder), skipped=cache.skipped)

    @classmethod
    def for_prediction(cls, folder, description: dict, cache_dir=None, echo=print, progress=True) -> FolderSource:
        """An unlabelled folder (Kaggle's test1/N.jpg), every image in "test" with label 0; ``files`` names them."""
        listing = scan_folder(folder, unlabelled=True)
        if note := listing.ignored_note():
            echo(note)
        cache = open_cache(listing, description["image_size"], cache_dir, progress=progress, echo=echo)
        _check_readable(cache, folder)
        n = len(cache.files)
        split = FolderSplit(cache, np.arange(n), np.zeros(n, np.int64))
        source = cls({"test": split}, (), description["crop"], str(folder), skipped=cache.skipped)
        source.files = [Path(f) for f in cache.files]
        return source

    # --- the data interface ----------------------------------------------------------------------------
    def _split(self, split: str) -> FolderSplit:
        return split_of(self.splits, split, self.name)

    def size(self, split: str) -> int:
        check_split(split)
        return 0 if self.splits[split] is None else len(self.splits[split].indices)

    def labels(self, split: str) -> torch.Tensor:
        return torch.from_numpy(self._split(split).labels)

    def loader(self, split, batch_size, device, *, train=False, seed=0, shard=ONE_PROCESS, view=None) -> CropLoader:
        part = self._split(split)
        return CropLoader(
            part, self.crop, batch_size, device, train=train, seed=seed, shard=shard, view=view or "centre"
        )

    def images(self, split: str, positions) -> torch.Tensor:
        part = self._split(split)
        index = part.indices[np.asarray(positions, dtype=np.int64)]
        top, left, _ = view_window("centre", part.cache.images.shape[1], self.crop)
        pixels = part.cache.images[index, top : top + self.crop, left : left + self.crop]
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def input_norm(self) -> InputNorm:
        # Mean subtraction in pixel units, as the recipe does it: std 1/255 makes (x/255 - mean)/std = x - 255*mean.
        mean = self._split("train").cache.mean
        return InputNorm(tuple(round(m, 6) for m in mean), (1 / 255,) * 3)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "dataset": self.name,
            "image_size": int(self._split("test").cache.images.shape[1]),
            "crop": self.crop,
            "input_size": list(self.image_size),
            "files": self.identity,
        }

    def eval_views(self) -> dict[str, tuple[str, ...]]:
        return {"centre crop": ("centre",), "10-crop": TEN_VIEWS}

    @staticmethod
    def file_reader(description: dict, invert: str = "auto"):
        """A file as the run's centre crop: shorter side to the cache size, centre crop, then the training crop
        (colour images: ``invert`` is for grey models)."""
        size, crop = description["image_size"], description["crop"]
        top, left, _ = view_window("centre", size, crop)

        def read(path) -> torch.Tensor:
            window = decode(path, size)[top : top + crop, left : left + crop]
            return torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)

        return read


def check_disjoint(train, val) -> None:
    """Validation images that are also training images (the same folder, one inside the other, links to the same
    files, hard links included: compared as files, not names) would report memorisation as accuracy: refused,
    naming one."""

    def identity(path):
        st = os.stat(path)
        return st.st_dev, st.st_ino

    training = {identity(f) for f in train.files}
    if shared := [f for f in val.files if identity(f) in training]:
        raise FolderError(
            f"{shared[0]}: a validation image (--val-dir {val.root}) that is also a training image (in {train.root});"
            f" {len(shared)} of {len(val.files)} are: validate on other images, or leave --val-dir out to hold some out"
        )


def crop_batch(images: np.ndarray, index: np.ndarray, tops, lefts, flips, crop: int) -> np.ndarray:
    """(B, crop, crop, 3) uint8 from the cache: one window per image, mirrored where ``flips``."""
    out = np.empty((len(index), crop, crop, 3), dtype=np.uint8)
    for j, i in enumerate(index):
        window = images[i, tops[j] : tops[j] + crop, lefts[j] : lefts[j] + crop]
        out[j] = window[:, ::-1] if flips[j] else window
    return out


def to_device(batch: np.ndarray, device) -> torch.Tensor:
    """NHWC uint8 -> an NCHW view whose memory is channels-last: no copy, and what convolutions want."""
    return torch.from_numpy(batch).to(device, non_blocking=True).permute(0, 3, 1, 2)


class CropLoader:
    """Training: this process's rows of each global batch, random crops and flips drawn for the whole global
    batch from (seed, epoch, step), so an image gets the same crop however many processes run and after a
    restart. Evaluation: one fixed view (the centre crop, or one of the ten) of this process's positions."""

    prefetch = 3  # batches cut ahead of the model

    def __init__(
        self, split: FolderSplit, crop, batch_size, device, *, train, seed=0, shard=ONE_PROCESS, view="centre"
    ):
        self.split, self.crop, self.batch_size, self.device = split, crop, batch_size, device
        self.train, self.seed, self.shard, self.view = train, seed, shard, view
        self.size = split.cache.images.shape[1]
        if crop > self.size:
            raise UsageError(f"crop {crop} is larger than the cached images ({self.size})")

    def __len__(self) -> int:
        return self.shard.batches(len(self.split.indices), self.batch_size, self.train)

    def global_batch_len(self, step: int) -> int:
        return self.shard.global_batch_len(len(self.split.indices), self.batch_size, step)

    def _batches(self, epoch: int, start: int):
        split, crop, size, bs = self.split, self.crop, self.size, self.batch_size
        n = len(split.indices)
        positions = (epoch_order(n, self.seed, epoch) if self.train else self.shard.eval_positions(n)).numpy()
        top, left, mirrored = view_window(self.view, size, crop)  # evaluation's one view; training draws its own
        for step in range(start, len(self)):
            pos = positions[step * bs : (step + 1) * bs]
            if self.train:  # drawn for the global batch from (seed, epoch, step), then this process's rows
                rng = np.random.default_rng(epoch_seed(self.seed, epoch * 1_000_003 + step, salt=2))
                tops = rng.integers(0, size - crop + 1, len(pos))
                lefts = rng.integers(0, size - crop + 1, len(pos))
                flips = rng.random(len(pos)) < 0.5
                rows = self.shard.rows(len(pos))
                pos, tops, lefts, flips = pos[rows], tops[rows], lefts[rows], flips[rows]
            else:
                tops, lefts, flips = [top] * len(pos), [left] * len(pos), [mirrored] * len(pos)
            pixels = crop_batch(split.cache.images, split.indices[pos], tops, lefts, flips, crop)
            yield pixels, torch.from_numpy(split.labels[pos])

    def epoch(self, epoch: int, start: int = 0):
        """Batches of (uint8 NCHW channels-last images, labels) on the device, cut on a background thread."""
        batches = self._batches(epoch, start)
        pool = ThreadPoolExecutor(max_workers=1)  # one worker: batches are cut in order, `prefetch` ahead
        try:
            ahead = deque(pool.submit(next, batches, None) for _ in range(self.prefetch))
            while (item := ahead.popleft().result()) is not None:  # a cutting error is raised here, in the loop
                ahead.append(pool.submit(next, batches, None))
                pixels, target = item
                yield to_device(pixels, self.device), target.to(self.device)
        finally:
            pool.shutdown(cancel_futures=True)  # waits for the batch being cut, drops the ones not started
