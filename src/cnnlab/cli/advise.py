"""cnnlab advise MODEL_OR_PATTERN: the lesson's best practices, checked layer by layer (exit 1 on a warning)."""

from __future__ import annotations

import argparse
import json

from ._model import add_model_arguments, build

NAME = "advise"
HELP = "check a model or pattern against the lesson's best practices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, "a registered model, or a pattern such as 'INPUT => [CONV => RELU]*2 => POOL => FC'")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from ..analysis.advise import advise, format_findings

    model, input_size = build(args)
    findings = advise(model, input_size)
    c, h, w = input_size
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        print(format_findings(findings, f"{args.model} at input {h}x{w}x{c}"))
    return 1 if any(f.severity == "warning" for f in findings) else 0
