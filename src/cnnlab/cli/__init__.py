"""The ``cnnlab`` command line: one subcommand per thing a user does with a network, one module per command.

    cnnlab models                       list the registered models
    cnnlab summary MODEL                Keras-style table: shapes, parameters, MACs
    cnnlab advise MODEL_OR_PATTERN      the lesson's best practices, checked layer by layer
    cnnlab compute MODEL [--chart PNG]  FLOPs, training compute in petaflop/s-days, the two eras
    cnnlab train MODEL [--epochs ...]   train and write a run directory (--resume RUN_DIR continues one;
                                        --nproc N, or torchrun, for several processes)
    cnnlab evaluate RUN_DIR [--data D]  classification report on the test set, or on new labelled data
    cnnlab predict RUN_DIR IMAGE...     classify image files
    cnnlab export RUN_DIR               ONNX (or --format pt2) for inference runtimes: raw pixels in, probabilities out
    cnnlab report RUN_DIR [RUN_DIR...]  rebuild a run's report.html, or one page comparing several runs
    cnnlab runs [FOLDER]                a table of the runs in a folder: model, data, epochs, accuracy, time

A command is one module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``
(parsing and messages only; the work lives in the library); adding one is that module plus an entry in
``COMMANDS``.

Every error a user can cause (a bad option or config value, a missing or damaged file, a full disk, a device
that is not here, an input size the model does not take) ends in one line, ``cnnlab: error: ...``, naming the
file or option, and exit status 2. Anything else is a bug of cnnlab's: its traceback, a line asking to report
it, and exit status 1. SIGINT ends a training run with exit status 130, SIGTERM with 143 (128 + signal).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import (
    advise,
    augment_preview,
    compute,
    evaluate,
    export,
    models,
    predict,
    report,
    runs,
    summary,
    train,
)

COMMANDS = (models, summary, advise, compute, train, augment_preview, evaluate, predict, export, report, runs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cnnlab", description="Classic CNNs (LeNet-5, AlexNet) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP))
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # train --nproc N runs this same command line under PyTorch's launcher
    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        return command.run(args)
    except BaseException as e:  # noqa: BLE001  (sorted below: user errors, interruptions, our bugs)
        return report_error(e)


def report_error(e: BaseException) -> int:
    """One line and exit 2 for an error the user can fix; 128 + signal for an interruption; for anything else,
    our bug: the traceback, a line asking to report it, and exit 1."""
    import traceback

    from ..errors import CnnlabError, TrainingInterrupted

    if isinstance(e, CnnlabError):  # a user error; DatasetNotFoundError's lines list every place looked at
        print(f"cnnlab: {'' if isinstance(e, TrainingInterrupted) else 'error: '}{e}", file=sys.stderr)
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, SystemExit):
        raise e
    message = user_error_message(e)
    if message is not None:
        print(f"cnnlab: error: {message}", file=sys.stderr)
        return 2
    if not isinstance(e, Exception):
        raise e
    traceback.print_exception(e)
    report = "report it to cnnlab's maintainers with the command line and the traceback above."
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # under torchrun: most often a peer died and this one lost it
        print(
            f"cnnlab: error in rank {os.environ.get('RANK', '?')} (of {os.environ['WORLD_SIZE']} processes, "
            f"{type(e).__name__}). If another process failed first (torchrun's summary names it under \"Root "
            'Cause"), its report is the cause and this one only lost contact with it; if not, this is a bug in '
            f"cnnlab: please {report}",
            file=sys.stderr,
        )
        return 1
    print(
        f"cnnlab: internal error ({type(e).__name__}): this is a bug in cnnlab, not in what you asked. Please "
        + report,
        file=sys.stderr,
    )
    return 1


def user_error_message(e: BaseException) -> str | None:
    """The one line for an error the user can fix, or None for one of ours.

    A ValueError is the user's when cnnlab raised it on purpose (its message names the file or option); one
    raised inside a library is an input cnnlab failed to check, a bug. OSErrors (a full disk, a missing or
    unreadable file) are the user's and name the file. Running out of memory names the way out."""
    import torch

    if isinstance(e, OSError):
        name = e.filename or ""
        reason = e.strerror or str(e) or type(e).__name__
        return f"{name}: {reason}" if name and str(name) not in reason else reason
    if isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)):
        first = str(e).splitlines()[0] if str(e) else "out of memory"
        return f"out of memory ({first[:200]}); try a smaller --batch-size or --eval-batch-size"
    if isinstance(e, ValueError) and _raised_in_cnnlab(e):
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _raised_in_cnnlab(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == "cnnlab"
