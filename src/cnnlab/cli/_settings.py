"""The training settings' flags, made from their one declaration: ``TrainConfig``'s fields (type, choices,
help, flag name: cnnlab.train.config) and the augmentation knobs (``cnnlab.augment.AugmentConfig``'s fields,
Keras ImageDataGenerator's arguments). A flag left out is None and changes nothing."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Literal

from ..train.config import NOT_IN_TRAINING, SETTINGS, TrainConfig, flag_name
from ._types import int_or_float, key_value

BY_HAND = ("model", "augment", "model_options")  # MODEL is positional; --augment and --option below


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (in a --config file: the same names with _, as in config.json)")
    for key, field in TrainConfig.model_fields.items():
        if key not in BY_HAND:
            parsing = _parsing(field.annotation, SETTINGS[key])
            group.add_argument(flag_name(key), dest=key, default=None, help=SETTINGS[key].help, **parsing)
    group.add_argument(
        "--option", dest="model_options", action="append", type=key_value, metavar="KEY=VALUE",
        help=SETTINGS["model_options"].help,
    )  # fmt: skip
    add_augment_arguments(parser)


def _parsing(hint, setting) -> dict:
    hint = _plain(hint)
    if hint is bool:
        return {"action": "store_false" if setting.flag.startswith("--no-") else argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is Literal:
        return {"choices": setting.choices or typing.get_args(hint), "metavar": setting.metavar}
    return {"type": hint, "metavar": setting.metavar}


def _plain(hint):
    """int for Annotated[int, ...], str for Annotated[str, ...] | None."""
    if typing.get_origin(hint) is typing.Annotated:
        return _plain(typing.get_args(hint)[0])
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _plain(next(h for h in typing.get_args(hint) if h is not type(None)))
    return hint


def given_settings(args: argparse.Namespace) -> dict:
    """The settings given as flags (None: not given), TrainConfig's names."""
    given = {key: getattr(args, key) for key in SETTINGS if key not in BY_HAND}
    given["model_options"] = dict(args.model_options) if args.model_options else None
    given["augment"] = augment_settings(args)
    return given


# --- augmentation ---------------------------------------------------------------------------------------------

AUGMENT_HELP = {  # AugmentConfig's fields, as Keras' ImageDataGenerator means them (see cnnlab.augment)
    "rotation_range": "degrees: theta ~ U(-r, r)",
    "width_shift_range": "as Keras: up and down; below 1 a fraction of the width, from 1 pixels, an int whole pixels",
    "height_shift_range": "as Keras: sideways; below 1 a fraction of the height, from 1 pixels, an int whole pixels",
    "shear_range": "degrees, as Keras >= 2.3 reads it (--shear-units radians for older Keras)",
    "zoom_range": "zx, zy ~ U(1 - z, 1 + z)",
    "horizontal_flip": "flip left-right with p = 0.5",
    "vertical_flip": "flip upside down with p = 0.5",
    "fill_mode": "points outside the image: SciPy's edge rules",
    "cval": "the value outside the image with --fill-mode constant",
    "brightness_range": "a brightness factor ~ U(LOW, HIGH), through an 8-bit image as in Keras",
    "channel_shift_range": "add U(-r, r) to every channel",
    "shear_units": "how --shear-range is read",
    "keras_axes": "Keras' swap of the shift axes (--no-keras-axes: the documented axes)",
}


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    from ..augment import FILL_MODES, AugmentConfig

    choices = {"fill_mode": FILL_MODES, "shear_units": ("degrees", "radians")}
    group = parser.add_argument_group("augmentation (Keras ImageDataGenerator's arguments and meanings)")
    group.add_argument(
        "--augment",
        action="store_true",
        help="the lesson's settings: rotation 30, shifts 0.1, shear 0.2 (degrees), zoom 0.2, fill nearest",
    )
    for key, hint in typing.get_type_hints(AugmentConfig).items():
        if key in NOT_IN_TRAINING:
            continue
        flag, help = "--" + key.replace("_", "-"), AUGMENT_HELP[key]
        args = typing.get_args(hint)
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help)
        elif key in choices:
            group.add_argument(flag, choices=choices[key], help=help)
        elif list in args and type(None) in args:  # a range [low, high]
            group.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"), help=help)
        else:  # an int shift range means whole pixels in Keras, a float a fraction
            group.add_argument(flag, type=int_or_float if int in args else float, help=help)


def augment_settings(args: argparse.Namespace) -> dict | None:
    """The augmentation asked for: the lesson's preset with --augment, then any knob given on its own."""
    from ..augment import LESSON, AugmentConfig

    knobs = {k: getattr(args, k) for k in AugmentConfig.__dataclass_fields__ if getattr(args, k, None) is not None}
    if not args.augment and not knobs:
        return None
    return {**(LESSON if args.augment else {}), **knobs}
