"""The one place that owns devices, processes, printing and who writes files.

One process, or N under PyTorch's launcher (``torchrun``, or ``cnnlab train --nproc N`` which starts it):
the runtime reads torchrun's variables, joins the process group (gloo on CPUs, NCCL on GPUs), and gives
the loop what it must not decide itself: this process's ``shard`` of the data, sums and gathers across
processes, rank 0's BatchNorm statistics, and whether this process is the one that prints and writes.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .. import errors
from ..data.loader import Shard
from ..errors import CnnlabError, UsageError

# torchrun (2.13 here; it began sharing in 2024) keeps one key-value store for all attempts and hands it to the
# processes: after a restart a new process can read a dead one's address from it, and its process group fails to
# connect or hangs until --timeout (6 restarts of 8 on a loaded 2-core machine, none of 8 with this set:
# benchmarks/torchrun_restarts.py; like pytorch/pytorch#135712). With it, each attempt's rank 0 serves a new
# store on a port torchrun picked. Only when restarts are allowed: without them it fixes nothing, and a store
# outliving every process (torchrun's reason to share) is what a run that ends normally wants.
FRESH_STORE_PER_ATTEMPT = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def restarts_share_one_store() -> bool:
    """Whether this process was started by a torchrun that may restart it and shares its store across attempts
    (``torchrun --max-restarts K`` by hand without the setting above, or with the static rendezvous, which
    always shares). Membership changes under ``--nnodes MIN:MAX`` also restart; they are not counted here."""
    return (
        os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) > 0
    )


SHARED_STORE_WARNING = (
    "torchrun may restart these processes but shares one store across attempts: a restarted process group can "
    "read a dead process's address and fail to connect or hang until --timeout. Use torchrun's c10d rendezvous "
    "(--standalone, or --rdzv-backend c10d) with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment on "
    "every machine (cnnlab train --nproc N --max-restarts K does this for you); the static rendezvous "
    "(--master-addr/--master-port) always shares its store."
)


def check_processes(cfg, nproc: int, device: torch.device | None = None) -> None:
    """What would stop every one of ``nproc`` processes at once, refused before any work: ``cnnlab train --nproc N``
    says it once before starting them, and ``fit`` again (for torchrun started by hand)."""
    if cfg.batch_size % nproc:  # a resume keeps its run's batch: the counts that divide it are the way out
        fits = ", ".join(str(n) for n in range(1, 17) if cfg.batch_size % n == 0)
        raise UsageError(
            f"--batch-size {cfg.batch_size} is the global batch and must divide among {nproc} processes "
            f"(--nproc {fits} divide it)"
        )
    if cfg.sync_bn and nproc > 1 and (device or pick_device(cfg.device)).type == "cpu":
        raise UsageError(
            "--sync-bn needs GPUs (PyTorch's SyncBatchNorm is GPU-only); on CPUs rank 0's "
            "BatchNorm statistics are shared before each evaluation instead"
        )


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def device_problem(name: str) -> str | None:
    """None when ``name`` is a device that exists here, else what is wrong with it."""
    if name in ("auto", "cpu"):
        return None
    kind, _, index = name.partition(":")
    if kind not in ("cuda", "mps") or (index and not index.isdigit()):
        return f"{name!r} is not a device name"
    if kind == "mps":
        return None if torch.backends.mps.is_available() and not index else "no MPS device here"
    if not torch.cuda.is_available():
        return "CUDA is not available here"
    if index and int(index) >= torch.cuda.device_count():
        return f"there are {torch.cuda.device_count()} CUDA device(s) here"
    return None


def pick_device(name: str | torch.device = "auto") -> torch.device:
    name = str(name)  # a torch.device as its name ("cuda:0")
    if (problem := device_problem(name)) is not None:  # --device of evaluate and predict, a Python caller's device=
        raise UsageError(f"device {name}: {problem}; devices here: {', '.join(['auto', *available_devices()])}")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        # an explicit index: set_device and the CUDA RNG state refuse a bare "cuda"
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name != "auto":
        return torch.device(name)
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


class Runtime:
    def __init__(self, device: str = "auto", precision: str = "fp32", threads: int = 0, timeout: float = 300):
        if precision not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.is_main = self.rank == 0  # the process that prints and writes files
        self.distributed = self.world_size > 1
        self.shard = Shard(self.rank, self.world_size)  # this process's rows of every global batch
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        self.device = pick_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.distributed and not dist.is_initialized():
            if self.is_main and restarts_share_one_store():
                warnings.warn(SHARED_STORE_WARNING, stacklevel=2)
            # A process that never arrives, or dies, ends the others' collectives after ``timeout`` seconds.
            dist.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout)
            )
        # torchrun sets one thread per process; a CPU run shares the cores among this machine's processes.
        threads = threads or (max(1, (os.cpu_count() or 1) // self.local_world_size) if self.distributed else 0)
        if threads:
            torch.set_num_threads(threads)
        self.precision = precision

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

    # --- collectives (each is the identity in a single process) -----------------------------------------
    def reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        """Sum (or ``op``) of ``t`` over all processes."""
        if self.distributed:
            t = t.clone()
            dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
        return t

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``t`` (same shape everywhere), in rank order."""
        if not self.distributed:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t.contiguous())
        return out

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true on every process when it is true on any (a stop signal seen by one process stops all
        alike), in one all-reduce for all of them."""
        if not self.distributed:
            return flags
        seen = self.reduce(torch.tensor([int(f) for f in flags], device=self.device), dist.ReduceOp.MAX)
        return tuple(bool(v) for v in seen.tolist())

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every process (small Python values: a run directory's name)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every process: without SyncBatchNorm each
        process's statistics saw only its own shard; evaluation and saved weights use rank 0's."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextmanager
    def main_first(self):
        """Rank 0 runs the block first (building a shared cache, say), the others after it has finished; a user
        error of rank 0's there (a missing data folder) ends the others with it, said by rank 0 alone."""
        if (said := None if self.is_main else self.broadcast_object(None)) is not None:
            kind, message, status = said
            error = getattr(errors, kind)(message)
            error.exit_code, error.alike = status, True
            raise error
        try:
            yield
        except CnnlabError as e:
            if self.is_main:  # the others wait for the block's outcome, not for rank 0's end
                e.alike = True
                # as the class of errors.py it is (a class of its own, a data kind's, may not unpickle elsewhere)
                kind = next(c for c in type(e).__mro__ if c.__module__ == errors.__name__).__name__
                self.broadcast_object((kind, str(e), e.exit_code))
            raise
        if self.is_main:
            self.broadcast_object(None)

    # --- what a person sees ----------------------------------------------------------------------------
    def print(self, *args, **kwargs) -> None:
        if self.is_main:
            tqdm.write(" ".join(str(a) for a in args), **kwargs)

    def progress(self, total: int, desc: str, enabled: bool = True):
        disable = not (enabled and self.is_main)
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="batch", disable=disable)


def shutdown() -> None:
    """Leave the process group at the end of a command (a no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()  # nobody leaves while another process still talks to it
        dist.destroy_process_group()
