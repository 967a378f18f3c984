"""The ``cnnlab`` command line: one subcommand per thing a user does with a network, one module per command.

``cnnlab --help`` lists the commands; each command module's docstring shows its command line.

A command is one module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``
(parsing and messages only; the work lives in the library); adding one is that module plus an entry in
``COMMANDS``.

Every error a user can cause (a bad option or config value, a missing or damaged file, a full disk, a device
that is not here, an input size the model does not take) ends in one line, ``cnnlab: error: ...``, naming the
file or option, and exit status 2. Anything else is a bug of cnnlab's: its traceback, a line asking to report
it, and exit status 1. SIGINT ends a training run with exit status 130, SIGTERM with 143 (128 + signal), a
reader that closed the pipe (``| head``) with 141 and no message. A warning of cnnlab's (a Keras word used as Keras
warns about it) is one line too, ``cnnlab: warning: ...``; other libraries' keep Python's format.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import io
import os
import sys
import traceback
import warnings
from pathlib import Path

from ..checkpoint import atomic_write_bytes
from ..environment import __version__
from ..errors import CnnlabError, TrainingInterrupted
from ..train.distributed import STATUS_DIR
from . import (
    activations,
    advise,
    augment_preview,
    compute,
    demo,
    evaluate,
    explain,
    export,
    filters,
    models,
    predict,
    report,
    runs,
    summary,
    train,
)

COMMANDS = (
    *(models, summary, advise, compute, train, augment_preview, evaluate, predict, export, report, runs),
    *(filters, activations, explain, demo),  # look inside a run and try it (cnnlab.explain, cnnlab.demo)
)


class CommandParser(argparse.ArgumentParser):
    """A command's parser: options go anywhere, as in any Unix tool, also after a positional before a variadic
    one (``predict RUN --top 2 IMAGE``), which plain argparse leaves unrecognized; ``--`` still ends options."""

    dashes = None  # while parsing: the words from "--" on, positionals whatever they look like

    def parse_known_args(self, args=None, namespace=None):
        if self.dashes is None:
            args = list(sys.argv[1:] if args is None else args)
            self.dashes = args[args.index("--") :] if "--" in args else []
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self.dashes = None
        # Pythons before 3.12.8 parse intermixed lines by calling this twice: for the options, where a "--" before
        # the first positional was lost (so the words after it are kept out), then for the positionals
        head, dashes, self.dashes = args[: len(args) - len(self.dashes)], self.dashes, []
        namespace, extras = super().parse_known_args(head, namespace)
        return namespace, extras + dashes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnlab", description="Classic CNNs (LeNet-5, AlexNet) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP))
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 (a latin-1 zip's) prints escaped: \udce9
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    args.argv = argv  # train --nproc N runs this same command line under PyTorch's launcher
    command = next(c for c in COMMANDS if c.NAME == args.command)
    alike = False
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(show_warning, warnings.showwarning)
            status = command.run(args)
        sys.stdout.flush()  # a reader gone (| head) shows here, not in Python's own flush at exit
    except BaseException as e:  # noqa: BLE001  (sorted below: user errors, interruptions, our bugs)
        status, alike = report_error(e), getattr(e, "alike", False)
    if (folder := os.environ.get(STATUS_DIR)) and "RANK" in os.environ:  # for the launcher of --nproc N
        name = f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}-{os.environ['RANK']}"
        with contextlib.suppress(OSError):  # without it the launcher reports torchrun's own status
            atomic_write_bytes(Path(folder, name), str(status).encode())
            # every process ends alike, rank 0 said why: no failure for torchrun to report (30 lines) or restart
            status = 0 if alike else status
    return status


PACKAGE = Path(__file__).resolve().parents[1]


def show_warning(python_show, message, category, filename, lineno, file=None, line=None) -> None:
    """A warning raised in cnnlab (its stack level points into the package) as one line, not as Python's
    file:line report with a line of our source, once under torchrun; a library's warning as Python shows it."""
    if not Path(filename).resolve().is_relative_to(PACKAGE):
        python_show(message, category, filename, lineno, file, line)
    elif int(os.environ.get("RANK", 0)) == 0:  # each process warns alike of the settings: rank 0 says it once
        print(f"cnnlab: warning: {message}", file=file or sys.stderr)


def report_error(e: BaseException) -> int:
    """The message and exit status of the module's docstring for ``e``, sorted by its class alone, never by
    where it was raised."""
    if isinstance(e, KeyboardInterrupt):
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, BrokenPipeError) and sys.stdout is sys.__stdout__:  # `cnnlab summary alexnet | head`
        devnull = os.open(os.devnull, os.O_WRONLY)  # what is left in the buffer goes nowhere, not to a traceback
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    if not isinstance(e, Exception):  # SystemExit and the like are not errors
        raise e
    if (message := user_error_message(e)) is not None:
        interrupted = isinstance(e, TrainingInterrupted)
        if not (getattr(e, "alike", False) and int(os.environ.get("RANK", 0)) > 0):  # rank 0 says it once
            print(f"cnnlab: {'' if interrupted else 'error: '}{message}", file=sys.stderr)
        return e.exit_code if isinstance(e, CnnlabError) else 2
    traceback.print_exception(e)
    report = "report it to cnnlab's maintainers with the command line and the traceback above."
    message = f"internal error ({type(e).__name__}): this is a bug in cnnlab, not in what you asked. Please {report}"
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # under torchrun: most often a peer died and this one lost it
        message = (
            f"error in rank {os.environ.get('RANK', '?')} (of {os.environ['WORLD_SIZE']} processes, "
            f"{type(e).__name__}). If another process failed first (torchrun's summary names it under \"Root "
            'Cause"), its report is the cause and this one only lost contact with it; if not, this is a bug in '
            f"cnnlab: please {report}"
        )
    print(f"cnnlab: {message}", file=sys.stderr)
    return 1


def user_error_message(e: BaseException) -> str | None:
    """The message for an error the user can fix (a CnnlabError, an OSError naming a file, a full disk, running
    out of memory: it names the flags that use less), or None for one of ours."""
    if isinstance(e, CnnlabError):
        return str(e)
    if isinstance(e, OSError) and (e.filename or e.errno in (errno.ENOSPC, errno.EDQUOT)):
        reason = e.strerror or str(e) or type(e).__name__
        return f"{e.filename}: {reason}" if e.filename and str(e.filename) not in reason else reason
    torch = sys.modules.get("torch")  # without torch loaded, no error can be torch's
    if isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.cuda.OutOfMemoryError)):
        first = str(e).splitlines()[0][:200] if str(e) else "out of memory"
        return f"out of memory ({first}); try a smaller --batch-size or --eval-batch-size"
    return None
