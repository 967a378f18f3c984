"""cnnlab demo RUN_DIR: a local web page to try a run: draw a digit or drop a photo (Gradio)."""

from __future__ import annotations

import argparse

from ._types import add_weights_argument, number_type, positive_int

NAME = "demo"
HELP = "a local web page to try a run: draw a digit or drop a photo, see the answer and where it looked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    add_weights_argument(parser)
    parser.add_argument("--top", type=positive_int, default=5, help="classes shown (default 5)")
    parser.add_argument("--host", default="127.0.0.1", help="default: this machine only (0.0.0.0: the network)")
    port = number_type(int, "a TCP port in 1..65535", lambda port: 1 <= port <= 65535)
    parser.add_argument("--port", type=port, help="default: Gradio's (7860, or the next free one)")


def run(args: argparse.Namespace) -> int:
    from ..demo import serve

    serve(args.run_dir, args.weights, args.top, args.host, args.port)  # until Ctrl-C
    return 0
