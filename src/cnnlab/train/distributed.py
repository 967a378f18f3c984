"""More than one process: ``cnnlab train --nproc N`` starts PyTorch's own launcher (torchrun) on this command.

The launcher runs the same command N times with RANK / WORLD_SIZE / LOCAL_RANK set; ``Runtime`` (runtime.py)
reads them and joins the process group. Nothing here pools processes itself: restarts after a failure
(``--max-restarts``), rendezvous and the fate of the other processes when one dies are torchrun's.
"""

from __future__ import annotations

import os
import subprocess
import sys

OWN_FLAGS = ("--nproc", "--max-restarts")  # this launcher's flags, not passed on to the processes

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


def launch(argv: list[str], nproc: int, max_restarts: int = 0) -> int:
    """Run ``cnnlab <argv>`` as ``nproc`` processes on this machine; the launcher's exit status."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "-m",
        "cnnlab",
        *strip_flags(argv, OWN_FLAGS),
    ]
    try:
        fresh = FRESH_STORE_PER_ATTEMPT if max_restarts else {}
        status = subprocess.call(cmd, env={**fresh, **os.environ})  # a value the user exported wins
    except KeyboardInterrupt:  # the processes got the same SIGINT and write their checkpoint
        status = 130
    if status not in (0, 130, 143):
        print(
            f"cnnlab: error: a training process failed (torchrun exit status {status}; its report is above). "
            "Checkpoints already written are kept: continue with cnnlab train --resume RUN_DIR",
            file=sys.stderr,
        )
    return status


def check_processes(cfg, nproc: int) -> None:
    """What would stop every process at once, said once before starting them (fit checks it again, for torchrun)."""
    from ..errors import UsageError
    from .runtime import pick_device

    if cfg.batch_size % nproc:
        raise UsageError(f"--batch-size {cfg.batch_size} is the global batch and must divide among {nproc} processes")
    if cfg.sync_bn and pick_device(cfg.device).type == "cpu":
        raise UsageError(
            "--sync-bn needs GPUs (PyTorch's SyncBatchNorm is GPU-only); on CPUs rank 0's "
            "BatchNorm statistics are shared before each evaluation instead"
        )


def strip_flags(argv: list[str], flags) -> list[str]:
    """``argv`` without ``--flag VALUE`` and ``--flag=VALUE`` for each of ``flags``."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in flags:
            skip = "=" not in token
            continue
        out.append(token)
    return out
