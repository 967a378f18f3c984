"""argparse types shared by the commands (each refuses a bad value with one line saying what was expected), and
``--weights``, which every command that reads a run takes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from ..rundir import WEIGHTS


def parse_size(text: str) -> tuple[int, int, int]:
    """'28x28x1' or '227x227x3' (H x W x C, as the lesson writes sizes) -> (C, H, W)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(1)
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size must look like 28x28x1 (height x width x channels), got {text!r}")
    h, w, c = parts
    return c, h, w


def key_value(pair: str) -> tuple[str, object]:
    """--option key=value: the value read as JSON when it parses (numbers, true/false, lists), else as text."""
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"model option must be key=value, got {pair!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def number_type(convert, words: str, ok):
    """An argparse type: ``convert(text)`` where ``ok`` of it, else the one line ``must be {words}, got {text}``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value

    return parse


positive_int = number_type(int, "a positive whole number", lambda value: value >= 1)
non_negative_int = number_type(int, "a whole number >= 0", lambda value: value >= 0)
positive_float = number_type(float, "a positive number", lambda value: 0 < value < float("inf"))


def int_or_float(text: str) -> int | float:
    """'3' -> 3, '0.1' or '3.0' -> a float: Keras reads an int shift range as whole pixels, a float as a range."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def refuse_output_over_input(output, inputs) -> None:
    """-o naming one of the command's own input files would destroy it: refused before any work."""
    out = Path(output)
    for given in inputs:
        if out.exists() and Path(given).exists() and out.samefile(given):
            raise UsageError(f"-o {output} is the input {given}; writing it would destroy it: give another name")


def output_named(*suffixes: str):
    """-o FILE: the name must say the format written (a .png picture, an .html page, a .csv table)."""

    def parse(text: str) -> Path:
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"must name a {' or '.join(suffixes)} file, got {text!r}")
        return Path(text)

    return parse


png_path = output_named(".png")


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", default="last", choices=WEIGHTS, help="last (after the last epoch; default) or best (val_accuracy)"
    )
