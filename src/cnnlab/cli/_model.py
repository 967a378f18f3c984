"""The model that ``summary``, ``advise`` and ``compute`` look at: a registered name or a pattern text, with
--input, --num-classes and --option."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ._types import key_value, parse_size, positive_int


def add_model_arguments(parser: argparse.ArgumentParser, model_help: str | None = None, nargs=None) -> None:
    parser.add_argument("model", nargs=nargs, help=model_help)
    parser.add_argument("--input", type=parse_size, help="input size HxWxC (default: the model's own)")
    parser.add_argument("--num-classes", type=positive_int, help="outputs of the last layer (default: the model's)")
    parser.add_argument(
        "--option", action="append", type=key_value, metavar="KEY=VALUE", help="model or pattern option (repeatable)"
    )


def build(args: argparse.Namespace):
    """(model, input size) from a registered name or a pattern text, with --input/--num-classes/--option;
    an input size the model does not take is refused naming the sizes it takes."""
    from ..models import create_model, get_model_entry, list_models
    from ..models.registry import check_input_size
    from ..train.recipes import check_model_options

    options = dict(args.option or [])
    if (classes := args.num_classes) and options.setdefault("num_classes", classes) != classes:
        raise UsageError(f"--num-classes {classes} and --option num_classes={options['num_classes']}: give one")
    name = args.model
    if name not in list_models() and ("=>" in name or name.strip().upper().split("(")[0] in ("CONV", "INPUT")):
        if "text" in options:
            raise UsageError("--option text=... and a pattern given as the model: give the pattern once")
        options["text"], name = name, "pattern"
    given = dict(options)  # --option and --num-classes; --input adds in_chans and img_size below
    input_size = args.input or get_model_entry(name).input_size
    model_options = get_model_entry(name).options()
    if "in_chans" in model_options and args.input:
        options.setdefault("in_chans", input_size[0])
    if "img_size" in model_options and args.input:
        if input_size[1] != input_size[2] and name == "pattern":
            raise UsageError("a pattern network is built for square inputs here; give --input HxHxC")
        options.setdefault("img_size", input_size[1])
    if name != "pattern":  # a pattern's options are checked by its parser, with the position in the text
        check_model_options(name, given, "flag")
    try:
        model = create_model(name, **options)
    except ValueError as e:  # the builder refuses the size --input gave it (not an --option: those passed)
        added_by_input = options.keys() - given.keys()
        if not added_by_input or name == "pattern":
            raise
        c, h, w = input_size
        raise UsageError(f"--input {h}x{w}x{c}: {e}") from None
    check_input_size(model, input_size, args.model if name != "pattern" else "the pattern")
    return model, input_size
