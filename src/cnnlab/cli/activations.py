"""cnnlab activations RUN_DIR IMAGE: what each convolution and pooling layer outputs for one image."""

from __future__ import annotations

import argparse

from ..checkpoint import atomic_write_bytes
from ..rundir import RunDir
from ._types import add_weights_argument, png_path, positive_int, refuse_output_over_input

NAME = "activations"
HELP = "the feature maps of each convolution and pooling layer for one image, a panel per layer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("image", help="an image file, read as the run's training read its images")
    parser.add_argument(
        "-o", "--output", type=png_path, default="activations.png", metavar="FILE.png", help="default: %(default)s"
    )
    parser.add_argument("--max-channels", type=positive_int, default=64, help="channels shown per layer (default 64)")
    add_weights_argument(parser)


def run(args: argparse.Namespace) -> int:
    from ..explain import activations_png
    from ..inference import load_run

    refuse_output_over_input(args.output, [args.image])
    RunDir(args.run_dir).check_output(args.output)  # not over the run's own files
    model, info = load_run(args.run_dir, args.weights)
    atomic_write_bytes(args.output, activations_png(model, info, args.image, args.max_channels))
    print(f"wrote {args.output}")
    return 0
