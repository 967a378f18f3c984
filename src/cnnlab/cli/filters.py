"""cnnlab filters RUN_DIR: a convolution's learned kernels as a grid of images (the AlexNet paper's Figure 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import atomic_write_bytes
from ..rundir import RunDir
from ._types import add_weights_argument, png_path

NAME = "filters"
HELP = "a convolution's kernels as a grid of images, each scaled to its own range (AlexNet's Figure 3)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument(
        "--layer",
        help="a convolution by module name (features.3) or as convN (default: the first); deeper layers show a "
        "row per kernel, a tile per input channel",
    )
    parser.add_argument(
        "-o", "--output", type=png_path, default="filters.png", metavar="FILE.png", help="default: %(default)s"
    )
    add_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..explain import filters_png
    from ..inference import load_run

    RunDir(args.run_dir).check_output(args.output)  # not over the run's own files (its filters.png, say)
    model, info = load_run(args.run_dir, args.weights)
    title = f"{info['model']}: {Path(args.run_dir).name}"
    atomic_write_bytes(args.output, filters_png(model, info, args.layer, title))
    print(f"wrote {args.output}")
    return 0
