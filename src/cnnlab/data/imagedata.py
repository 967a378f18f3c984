"""Image-folder datasets for training and evaluation: crops of cached pixels, batched off the main thread.

The lesson's book recipe (AlexNet on Dogs vs. Cats): images cached at 256x256, the training set's
per-channel mean subtracted, random 227x227 crops with horizontal flips for training, the centre crop for
validation, and 10-crop over-sampling (four corners and the centre, and their mirrors) for evaluation.
Batches are cut from the memory-mapped cache on a background thread while the model computes, travel to
the device as uint8 (a quarter of float32's bytes) and are converted there.
"""

from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .cache import ImageCache
from .loader import InputNorm, epoch_order, epoch_seed, steps_per_epoch


@dataclass
class ImageFolderData:
    cache: ImageCache
    indices: np.ndarray  # which cached images belong to this split
    crop: int = 227
    augment: bool = False  # random crops and flips (training); else the centre crop
    name: str = ""

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cache.classes

    @property
    def num_classes(self) -> int:
        return len(self.cache.classes)

    @property
    def image_size(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.cache.labels[self.indices])

    def split(self, keep, held) -> tuple[ImageFolderData, ImageFolderData]:
        keep, held = np.asarray(keep), np.asarray(held)
        return (
            ImageFolderData(self.cache, self.indices[keep], self.crop, True, self.name),
            ImageFolderData(self.cache, self.indices[held], self.crop, False, self.name),
        )

    def subset(self, index) -> ImageFolderData:
        return ImageFolderData(self.cache, self.indices[np.asarray(index)], self.crop, self.augment, self.name)

    def input_norm(self) -> InputNorm:
        # Mean subtraction in pixel units, as the recipe does it: std 1/255 makes (x/255 - mean)/std = x - 255*mean.
        return InputNorm(tuple(round(m, 6) for m in self.cache.mean), (1 / 255,) * 3)

    def loader(self, batch_size, device, *, shuffle, seed=0, shard=None, max_batches=0, train=None):
        train = self.augment if train is None else train
        return CropLoader(
            self, batch_size, device, shuffle=shuffle, train=train, seed=seed, shard=shard, max_batches=max_batches
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
    def __init__(
        self,
        data: ImageFolderData,
        batch_size,
        device,
        *,
        shuffle,
        train,
        seed=0,
        shard=None,
        max_batches=0,
        prefetch=3,
    ):
        self.data, self.batch_size, self.device = data, batch_size, device
        self.shuffle, self.train, self.seed = shuffle, train, seed
        self.shard = shard or (lambda order: order)
        self.max_batches, self.prefetch = max_batches, prefetch

    def __len__(self) -> int:
        return steps_per_epoch(len(self.data), self.batch_size, self.shard, self.max_batches)

    def _batches(self, epoch: int, start: int):
        data, crop = self.data, self.data.crop
        size = data.cache.images.shape[1]
        n = len(data)
        order = epoch_order(n, self.seed, epoch) if self.shuffle else torch.arange(n)
        order = self.shard(order).numpy()
        labels = data.cache.labels
        for step in range(start, len(self)):
            pos = order[step * self.batch_size : (step + 1) * self.batch_size]
            index = data.indices[pos]
            if self.train:  # drawn per step from (seed, epoch, step): a resumed run replays the same crops
                rng = np.random.default_rng(epoch_seed(self.seed, epoch * 1_000_003 + step, salt=2))
                tops = rng.integers(0, size - crop + 1, len(index))
                lefts = rng.integers(0, size - crop + 1, len(index))
                flips = rng.random(len(index)) < 0.5
            else:
                tops = lefts = np.full(len(index), (size - crop) // 2)
                flips = np.zeros(len(index), bool)
            pixels = crop_batch(data.cache.images, index, tops, lefts, flips, crop)
            target = (
                torch.from_numpy(labels[index]) if labels is not None else torch.zeros(len(index), dtype=torch.long)
            )
            yield pixels, target

    def epoch(self, epoch: int, start: int = 0):
        """Batches of (uint8 NCHW channels-last images, labels) on the device, cut on a background thread."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        done = object()
        stop = threading.Event()

        def produce():
            try:
                for item in self._batches(epoch, start):
                    if stop.is_set():
                        return
                    q.put(item)
            except BaseException as e:  # handed to the consumer, so that errors are not lost in the thread
                q.put(e)
            q.put(done)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := q.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                pixels, target = item
                yield to_device(pixels, self.device), target.to(self.device)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)


TEN_CROP_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


def ten_crop_offsets(size: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of the four corner crops and the centre crop; each is also taken mirrored."""
    far, mid = size - crop, (size - crop) // 2
    return [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]


@torch.no_grad()
def predict_ten_crop(
    model, data: ImageFolderData, preprocess, device, batch_size=64, autocast=nullcontext, centre_only=False
):
    """Softmax probabilities averaged over the 10 crops, and those of the centre crop alone: (ten, centre).
    With ``centre_only`` only the centre crop is computed, and both are its probabilities."""
    model.eval()
    size, crop = data.cache.images.shape[1], data.crop
    offsets = ten_crop_offsets(size, crop)
    centre_view = (*offsets[4], False)
    views = [centre_view] if centre_only else [(top, left, f) for top, left in offsets for f in (False, True)]
    ten, centre = [], []
    for start in range(0, len(data), batch_size):
        index = data.indices[start : start + batch_size]
        total = 0
        for top, left, flip in views:
            pixels = crop_batch(
                data.cache.images, index, [top] * len(index), [left] * len(index), [flip] * len(index), crop
            )
            with autocast():
                logits = model(preprocess(to_device(pixels, device)))
            probs = torch.softmax(logits.float(), dim=1).cpu()
            total = total + probs
            if (top, left, flip) == centre_view:
                centre.append(probs)
        ten.append(total / len(views))
    return torch.cat(ten), torch.cat(centre)
