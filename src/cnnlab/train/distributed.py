"""More than one process: ``cnnlab train --nproc N`` starts PyTorch's own launcher (torchrun) on this command.

The launcher runs the same command N times with RANK / WORLD_SIZE / LOCAL_RANK set; ``Runtime`` (runtime.py)
reads them and joins the process group. Nothing here pools processes itself: restarts after a failure
(``--max-restarts``), rendezvous and the fate of the other processes when one dies are torchrun's.
"""

from __future__ import annotations

import subprocess
import sys

OWN_FLAGS = ("--nproc", "--max-restarts")  # this launcher's flags, not passed on to the processes


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
        status = subprocess.call(cmd)
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
    from .runtime import pick_device

    if cfg.batch_size % nproc:
        raise ValueError(f"--batch-size {cfg.batch_size} is the global batch and must divide among {nproc} processes")
    if cfg.sync_bn and pick_device(cfg.device).type == "cpu":
        raise ValueError(
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
