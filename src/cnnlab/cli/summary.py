"""cnnlab summary MODEL: Keras' model.summary() table (output shapes, parameters, MACs)."""

from __future__ import annotations

import argparse
import json

from ._model import add_model_arguments, build

NAME = "summary"
HELP = "Keras-style summary of a model: output shapes, parameters, MACs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--layout",
        choices=["keras", "torch"],
        help="shapes as Keras prints them (None, H, W, C), the default, or PyTorch's (N, C, H, W)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..summary import summary

    if args.json and args.layout:
        raise UsageError("--layout shapes the printed table; --json writes PyTorch's (C, H, W): give one of them")
    model, input_size = build(args)
    table = summary(model, input_size)
    print(json.dumps(table.to_dict(), indent=2) if args.json else table.format(args.layout or "keras"))
    return 0
