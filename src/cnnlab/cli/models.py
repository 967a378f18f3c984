"""cnnlab models: the registered models, their input sizes and what they are."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the registered models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from ..models import get_model_entry, list_models

    for name in list_models():
        entry = get_model_entry(name)
        c, h, w = entry.input_size
        size = f"{h}x{w}x{c}"
        print(f"{name:16s} {size:11s} {entry.description}")  # one column for 227x227x3 and 28x28x1
    return 0
