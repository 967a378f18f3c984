"""Batch order, its sharding across processes, batches of in-memory data, and raw pixels -> model input.

One rule decides which images a step sees, whatever the number of processes: epoch ``e`` visits the
permutation drawn from (seed, e), cut into global batches of ``batch_size``; with N processes each one
takes every N-th image of each global batch (``Shard``). N processes therefore see exactly the samples
one process sees, in the same global batches, and a checkpoint written by N processes resumes with M.
Nothing about the order is saved: any epoch, and any step in it, is replayed from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .datasets import ArrayDataset


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    # Distinct, reproducible streams per (seed, epoch, purpose); fits in 63 bits.
    return (seed * 1_000_003 + epoch * 7_919 + salt * 104_729) % (2**63 - 1)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g)


@dataclass(frozen=True)
class Shard:
    """Process ``rank`` of ``world``: which part of each global batch, and of an evaluation, is its own."""

    rank: int = 0
    world: int = 1

    def train_steps(self, n: int, global_batch: int) -> int:
        """Global batches in an epoch of ``n`` samples, the last one partial (``train.checks`` refuses one smaller
        than the number of processes, which would leave one of them without a sample)."""
        return -(-n // global_batch)

    def batches(self, n: int, batch_size: int, train: bool) -> int:
        """This process's batches in an epoch of ``n`` samples: the global batches when training, else its
        ``eval_positions`` ``batch_size`` at a time."""
        return self.train_steps(n, batch_size) if train else -(-len(self.eval_positions(n)) // batch_size)

    def global_batch_len(self, n: int, global_batch: int, step: int) -> int:
        return min(global_batch, n - step * global_batch)

    def rows(self, batch_len: int) -> slice:
        """This process's rows of a global batch of ``batch_len``: every world-th, from its rank."""
        return slice(self.rank, batch_len, self.world)

    def eval_positions(self, n: int) -> torch.Tensor:
        """Positions rank, rank + world, ... padded to the same count on every process, so that gathering
        the processes' outputs and interleaving them gives dataset order; the padding repeats the last
        position and is cut off after the gather (no image dropped, none counted twice)."""
        per = -(-n // self.world)
        return (torch.arange(per) * self.world + self.rank).clamp_max(max(n - 1, 0))


ONE_PROCESS = Shard()


def interleave(gathered: list[torch.Tensor], n: int) -> torch.Tensor:
    """The inverse of ``Shard.eval_positions``: per-process outputs (per, ...) -> dataset order (n, ...)."""
    stacked = torch.stack(gathered, dim=1)  # (per, world, ...): position i * world + rank
    return stacked.reshape(-1, *stacked.shape[2:])[:n]


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

    @classmethod
    def from_dict(cls, d: dict) -> InputNorm:
        return cls(tuple(d["mean"]), tuple(d["std"]))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


class Preprocess:
    """uint8 (N, C, H, W) on the device -> normalized float, optionally augmented, channels-last."""

    def __init__(self, norm: InputNorm, device, channels_last: bool = True, augment=None):
        # Folded into one multiply-add: x * scale + shift == (x / 255 - mean) / std.
        std = torch.tensor(norm.std, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(norm.mean, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std
        self.channels_last = channels_last
        self.augment = augment

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None, draw: int | None = None, rows=None
    ) -> torch.Tensor:
        """``draw``/``rows``: augmentation parameters are drawn for the whole global batch (``draw`` images)
        and this process keeps ``rows`` of them, so an image is transformed alike however many processes run."""
        if self.augment is not None and generator is not None:
            x = self.augment(x.float(), generator=generator, draw=draw, rows=rows)
        x = torch.addcmul(self.shift, x.float(), self.scale)
        if self.channels_last and x.shape[1] > 1:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class InMemoryLoader:
    """Batches of an ``ArrayDataset`` held on the device. Training (``train=True``): this process's rows of each
    global batch of the epoch's permutation; evaluation: its ``Shard.eval_positions``, ``batch_size`` at a time."""

    def __init__(self, data: ArrayDataset, batch_size: int, device, *, train: bool, seed: int = 0, shard=ONE_PROCESS):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.train, self.seed, self.shard = batch_size, train, seed, shard
        self.device = device

    def __len__(self) -> int:
        return self.shard.batches(len(self.labels), self.batch_size, self.train)

    def global_batch_len(self, step: int) -> int:
        return self.shard.global_batch_len(len(self.labels), self.batch_size, step)

    def epoch(self, epoch: int, start: int = 0):
        """Yield (images uint8, labels) for ``epoch``, from batch ``start`` on."""
        n = len(self.labels)
        positions = (epoch_order(n, self.seed, epoch) if self.train else self.shard.eval_positions(n)).to(self.device)
        for step in range(start, len(self)):
            idx = positions[step * self.batch_size : (step + 1) * self.batch_size]
            if self.train:  # a global batch: this process's rows of it
                idx = idx[self.shard.rows(len(idx))]
            yield self.images[idx], self.labels[idx]
