"""The one place that owns devices, processes, data sharding, printing and file writing.

The training loop asks the runtime instead of deciding itself, so running under ``torchrun`` with
DistributedDataParallel changes this file, not the loop: ``shard`` gives each process its slice of the
epoch's order, ``reduce`` sums metrics across processes, and only the main process prints and writes.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch
import torch.distributed as dist
from tqdm.auto import tqdm


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        # an explicit index: set_device and the CUDA RNG state refuse a bare "cuda"
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name != "auto":
        return torch.device(name)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Runtime:
    def __init__(self, device: str = "auto", precision: str = "fp32", threads: int = 0):
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = pick_device(device)
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if threads:
            torch.set_num_threads(threads)
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.precision = precision

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's part of an epoch's order (every process drops the same remainder)."""
        if not self.distributed:
            return order
        usable = len(order) - len(order) % self.world_size
        return order[self.rank : usable : self.world_size]

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over all processes (``t`` itself in a single process)."""
        if self.distributed:
            t = t.clone()
            dist.all_reduce(t)
        return t

    def print(self, *args, **kwargs) -> None:
        if self.is_main:
            tqdm.write(" ".join(str(a) for a in args), **kwargs)

    def progress(self, total: int, desc: str, enabled: bool = True):
        return tqdm(
            total=total,
            desc=desc,
            leave=False,
            dynamic_ncols=True,
            unit="batch",
            disable=not (enabled and self.is_main),
        )

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
