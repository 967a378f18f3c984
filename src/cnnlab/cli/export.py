"""cnnlab export RUN_DIR: the run's model as ONNX (or torch.export's pt2) for inference runtimes."""

from __future__ import annotations

import argparse

from ..rundir import RunDir
from ._types import add_weights_argument

NAME = "export"
HELP = "export a run's model for inference runtimes: ONNX or torch.export (pt2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument(
        "--format", choices=["onnx", "pt2"], help="default: as -o's name says (.onnx or .pt2), else onnx"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="default: RUN_DIR/model.onnx (model-best.onnx for best); never a run's file",
    )
    add_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..export import INPUT_CONVENTION, OUTPUT_CONVENTION, export_run

    RunDir(args.run_dir).notice_unfinished()
    path = export_run(args.run_dir, args.format, args.output, args.weights)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)\ninput  {INPUT_CONVENTION}\noutput {OUTPUT_CONVENTION}")
    return 0
