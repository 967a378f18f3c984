"""More than one process: ``cnnlab train --nproc N`` starts PyTorch's own launcher (torchrun) on this command.

The launcher runs the same command N times with RANK / WORLD_SIZE / LOCAL_RANK set; ``Runtime`` (runtime.py)
reads them and joins the process group (this module uses the runtime, never the reverse). Nothing here pools
processes itself: restarts after a failure (``--max-restarts``), rendezvous and the fate of the other processes
when one dies are torchrun's.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .runtime import FRESH_STORE_PER_ATTEMPT, check_processes  # noqa: F401  (the CLI checks here)

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


def strip_flags(argv: list[str], flags) -> list[str]:
    """``argv`` without ``--flag VALUE`` and ``--flag=VALUE`` for each of ``flags``."""
    out, tokens = [], iter(argv)
    for token in tokens:
        name, equals, _ = token.partition("=")
        if name not in flags:
            out.append(token)
        elif not equals:
            next(tokens, None)  # the flag's value is the next token
    return out
