"""More than one process: ``cnnlab train --nproc N`` starts PyTorch's own launcher (torchrun) on this command.

The launcher runs the same command N times with RANK / WORLD_SIZE / LOCAL_RANK set; ``Runtime`` (runtime.py)
reads them and joins the process group (this module uses the runtime, never the reverse). Nothing here pools
processes itself: restarts after a failure (``--max-restarts``), rendezvous and the fate of the other processes
when one dies are torchrun's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .runtime import FRESH_STORE_PER_ATTEMPT, check_processes  # noqa: F401  (the CLI checks here)

OWN_FLAGS = ("--nproc", "--max-restarts")  # this launcher's flags, not passed on to the processes


# Each process writes its exit status here (cli.main): torchrun reports 1 for any failure, and the launcher tells a
# user's mistake (2: the processes printed it) and an interruption (130, 143: they wrote their checkpoint) apart.
STATUS_DIR = "CNNLAB_STATUS_DIR"


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
    fresh = FRESH_STORE_PER_ATTEMPT if max_restarts else {}
    received: list[int] = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-status-") as statuses:
        env = {**fresh, **os.environ, STATUS_DIR: statuses}  # a value the user exported wins
        # Its own session: a terminal's Ctrl-C reaches the processes once, through torchrun, as a SIGTERM to this
        # launcher does (torchrun passes a signal on to them; they write a checkpoint and end).
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)

        def forward(signum, frame):
            received.append(signum)
            proc.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            status = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        ended = {int(p.read_text()) for p in Path(statuses).iterdir()}
    if received or (status and ended and ended <= {130, 143}):  # each process said where its checkpoint is
        return 128 + received[0] if received else max(ended)
    if status and 2 in ended:  # a mistake in the command line or the data, which a process named
        return 2
    if status:
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
