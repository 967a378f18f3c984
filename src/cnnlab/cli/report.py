"""cnnlab report RUN_DIR [RUN_DIR...]: rebuild a run's report.html, or one page comparing several runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..rundir import RunDir, write_comparison
from ._types import output_named

NAME = "report"
HELP = "rebuild a run's report.html, or write one page comparing several runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "-o",
        "--output",
        type=output_named(".html", ".htm"),
        help="where the page goes (one run: RUN_DIR/report.html; several: comparison.html)",
    )


def run(args: argparse.Namespace) -> int:
    places = [Path(d).resolve() for d in args.run_dirs]  # runs/a and ./runs/a/ are one run
    if twice := next((d for i, (d, place) in enumerate(zip(args.run_dirs, places)) if place in places[:i]), None):
        raise UsageError(f"{twice}: given twice; a comparison shows each run once")
    if len(args.run_dirs) == 1:
        path = RunDir(args.run_dirs[0]).write_report(args.output)
    else:
        path = write_comparison(args.run_dirs, args.output or "comparison.html")
    print(f"wrote {path}")
    return 0
