"""Batches for training and evaluation, and the conversion of raw pixels into model input.

An in-memory dataset is moved to the device once, as uint8; each batch is an index into it. The
epoch's order comes from a generator seeded by (seed, epoch), so any epoch, and any step inside it,
can be replayed exactly after a restart without saving sampler state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .datasets import ArrayDataset


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    # Distinct, reproducible streams per (seed, epoch, purpose); fits in 63 bits.
    return (seed * 1_000_003 + epoch * 7_919 + salt * 104_729) % (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g).to(device)


def steps_per_epoch(n: int, batch_size: int, shard, max_batches: int = 0) -> int:
    """Batches in an epoch of this process's share of ``n`` samples (the last may be short)."""
    steps = -(-len(shard(torch.arange(n))) // batch_size)
    return min(steps, max_batches) if max_batches else steps


@dataclass
class InputNorm:
    """Per-channel mean and std of the training images, in [0, 1] pixel units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: torch.Tensor, max_images: int = 20_000) -> InputNorm:
        sample = images[:max_images].float().div_(255)
        mean = sample.mean(dim=(0, 2, 3))
        std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return cls(tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


class Preprocess:
    """uint8 (N, C, H, W) on the device -> normalized float, optionally augmented, channels-last."""

    def __init__(self, norm: InputNorm, device, channels_last: bool = True, augment=None):
        c = len(norm.mean)
        # Folded into one multiply-add: x * scale + shift == (x / 255 - mean) / std.
        std = torch.tensor(norm.std, device=device).view(1, c, 1, 1)
        mean = torch.tensor(norm.mean, device=device).view(1, c, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std
        self.channels_last = channels_last
        self.augment = augment

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.augment is not None and generator is not None:
            x = self.augment(x.float(), generator=generator)
        x = torch.addcmul(self.shift, x.float(), self.scale)
        if self.channels_last and x.shape[1] > 1:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class InMemoryLoader:
    """Batches of an ``ArrayDataset`` held on the device; every sample once per epoch (the last batch may be short)."""

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        device,
        shuffle: bool = True,
        seed: int = 0,
        shard=None,
        max_batches: int = 0,
    ):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.shard = shard or (lambda order: order)
        self.max_batches = max_batches
        self.device = device

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.labels)
        order = epoch_order(n, self.seed, epoch, self.device) if self.shuffle else torch.arange(n, device=self.device)
        return self.shard(order)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.labels), self.batch_size, self.shard, self.max_batches)

    def epoch(self, epoch: int, start: int = 0):
        """Yield (images uint8, labels) for ``epoch``, from batch ``start`` on."""
        order = self._order(epoch)
        for step in range(start, len(self)):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]


def make_loader(data, batch_size, device, *, shuffle, train=False, seed=0, shard=None, max_batches=0):
    """The batch source for ``data``: an in-memory dataset, or any dataset that brings its own ``loader``."""
    if hasattr(data, "loader"):
        return data.loader(
            batch_size, device, shuffle=shuffle, train=train, seed=seed, shard=shard, max_batches=max_batches
        )
    return InMemoryLoader(data, batch_size, device, shuffle=shuffle, seed=seed, shard=shard, max_batches=max_batches)


def input_norm_of(data) -> InputNorm:
    return data.input_norm() if hasattr(data, "input_norm") else InputNorm.of(data.images)
