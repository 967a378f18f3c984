"""The augmentation flags (Keras ImageDataGenerator's arguments), shared by ``train`` and ``augment-preview``."""

from __future__ import annotations

import argparse

from ._types import int_or_float

AUGMENT_FLAGS = {  # Keras ImageDataGenerator argument -> its type on the command line
    "rotation_range": float,
    "width_shift_range": int_or_float,
    "height_shift_range": int_or_float,
    "shear_range": float,
    "zoom_range": float,
    "channel_shift_range": float,
    "cval": float,
    "fill_mode": str,
    "shear_units": str,
}


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("augmentation (Keras ImageDataGenerator's arguments and meanings)")
    g.add_argument(
        "--augment",
        action="store_true",
        help="the lesson's settings: rotation 30, shifts 0.1, shear 0.2 (degrees), zoom 0.2, fill nearest",
    )
    for name, kind in AUGMENT_FLAGS.items():
        choices = {"fill_mode": ["constant", "nearest", "reflect", "wrap"], "shear_units": ["degrees", "radians"]}
        g.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices.get(name))
    g.add_argument("--horizontal-flip", action="store_true", default=None)
    g.add_argument("--vertical-flip", action="store_true", default=None)
    g.add_argument("--brightness-range", type=float, nargs=2, metavar=("LOW", "HIGH"))


def augment_settings(args: argparse.Namespace) -> dict | None:
    """The augmentation asked for: the lesson's preset with --augment, then any knob given on its own."""
    from ..augment import LESSON

    knobs = {
        k: getattr(args, k)
        for k in (*AUGMENT_FLAGS, "horizontal_flip", "vertical_flip", "brightness_range")
        if getattr(args, k, None) is not None
    }
    if not args.augment and not knobs:
        return None
    return {**(LESSON if args.augment else {}), **knobs}
