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
from contextlib import suppress
from pathlib import Path

from .runtime import FRESH_STORE_PER_ATTEMPT, check_processes  # noqa: F401  (the CLI checks here)

OWN_FLAGS = ("--nproc", "--max-restarts")  # this launcher's flags, not passed on to the processes


# Each process writes its exit status here (cli.main), as ATTEMPT-RANK: torchrun reports 1 for any failure, and
# the launcher tells a user's mistake (2: the processes printed it) and an interruption (130, 143: they wrote their
# checkpoint) apart when every process of the last attempt said so.
STATUS_DIR = "CNNLAB_STATUS_DIR"
# The signals passed on to torchrun, which passes them to the processes: a hangup (a closed terminal or ssh
# session) and a quit stop the run as a SIGTERM does, with a checkpoint.
PASSED_ON = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM,
             signal.SIGQUIT: signal.SIGTERM}  # fmt: skip

# torchrun, without the traceback it ends with when it passed a signal on (30 lines): the processes say what they did
TORCHRUN = """from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.run import main
try:
    main()
except SignalException as e:
    raise SystemExit(128 + e.sigval)"""


def launch(argv: list[str], nproc: int, max_restarts: int = 0) -> int:
    """Run ``cnnlab <argv>`` as ``nproc`` processes on this machine; the launcher's exit status."""
    torchrun = ["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}"]
    cmd = [sys.executable, "-c", TORCHRUN, *torchrun, "-m", "cnnlab", *strip_flags(argv, OWN_FLAGS)]
    fresh = FRESH_STORE_PER_ATTEMPT if max_restarts else {}
    received: list[int] = []
    proc = None

    def forward(signum, frame):
        received.append(signum)
        if proc is not None:
            proc.send_signal(PASSED_ON[signum])

    # Handlers first: a signal while torchrun starts is passed on once it has. torchrun gets a session of its own,
    # so that a terminal's signal reaches the processes once, through it.
    previous = {sig: signal.signal(sig, forward) for sig in PASSED_ON}
    try:
        with tempfile.TemporaryDirectory(prefix="cnnlab-status-") as statuses:
            env = {**fresh, **os.environ, STATUS_DIR: statuses}  # a value the user exported wins
            proc = subprocess.Popen(cmd, env=env, start_new_session=True)
            if received:
                proc.send_signal(PASSED_ON[received[0]])
            status = proc.wait()
            ended = last_attempt(Path(statuses))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = set(ended.values())
    every = len(ended) == nproc  # a process killed outright says nothing: then torchrun's status stands
    if every and codes <= {130, 143}:  # each process said where its checkpoint is
        return 128 + received[0] if received else max(codes)
    if every and ended.get(0) == 2:  # rank 0 named a mistake in the command line or the data (the others ended
        return 2  # with it, or lost contact with it, which is no failure of theirs)
    if status == 0:
        return 0
    print(
        f"cnnlab: error: a training process failed (torchrun exit status {status}; its report is above). "
        "Checkpoints already written are kept: continue with cnnlab train --resume RUN_DIR",
        file=sys.stderr,
    )
    return status


def last_attempt(statuses: Path) -> dict[int, int]:
    """{rank: exit status} of the processes of torchrun's last attempt that wrote theirs (ATTEMPT-RANK files)."""
    found: dict[int, dict[int, int]] = {}
    for path in statuses.iterdir():
        attempt, _, rank = path.name.partition("-")
        with suppress(ValueError, OSError):
            found.setdefault(int(attempt), {})[int(rank)] = int(path.read_text())
    return found[max(found)] if found else {}


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
