"""cnnlab runs [FOLDER]: a table of the runs in a folder."""

from __future__ import annotations

import argparse

NAME = "runs"
HELP = "a table of the runs in a folder: model, data, epochs, accuracy, time, state"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default="runs", help="a folder of run directories (default: runs)")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.html_report import format_runs_table
    from ..rundir import list_runs

    records = list_runs(args.folder)
    print(format_runs_table(records) if records else f"no run directories in {args.folder}")
    return 0
