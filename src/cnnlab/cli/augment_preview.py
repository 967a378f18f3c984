"""cnnlab augment-preview [IMAGE]: a PNG grid of an image and its augmented copies (the lesson's picture)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..rundir import refuse_run_files
from ._settings import add_augment_arguments, augment_settings
from ._types import png_path, positive_int, refuse_output_over_input

NAME = "augment-preview"
HELP = "a PNG grid of an image and its augmented copies (the lesson's picture)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", help="an image file (default: an image of --dataset)")
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], help="without IMAGE (default: mnist)")
    parser.add_argument("--data-dir", help="without IMAGE: the folder of the dataset's files")
    parser.add_argument("--index", type=int, help="without IMAGE: which training image of the dataset (default 0)")
    parser.add_argument("--count", type=positive_int, default=18, help="augmented copies (default 18, the lesson's)")
    parser.add_argument("--seed", type=int, default=42, help="the random draws (default 42): same seed, same grid")
    parser.add_argument(
        "-o", "--output", type=png_path, default="augment_preview.png", metavar="FILE.png", help="default: %(default)s"
    )
    add_augment_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..augment import Augment, preview_grid
    from ..data import load_idx_dataset
    from ..data.images import load_any_image
    from ..train.config import check_augment

    idle = [flag for flag in ("dataset", "data_dir", "index") if getattr(args, flag) is not None]
    if args.image and idle:
        raise UsageError(f"--{idle[0].replace('_', '-')} picks an image of a dataset; it does nothing with IMAGE")
    refuse_output_over_input(args.output, [args.image] if args.image else [])
    refuse_run_files(args.output)  # not over a run's own augment_preview.png, say
    settings = augment_settings(args)
    if settings is None:
        aug = Augment.lesson()
    else:  # as training applies these flags: a knob given on its own is that knob alone, not the lesson's others
        check_augment(settings, "augmentation")
        aug = Augment.lesson(**settings) if args.augment else Augment(**settings)  # lesson: its shear, unwarned
    if args.image:
        image, title = load_any_image(args.image), Path(args.image).name
    else:
        dataset, index = args.dataset or "mnist", args.index or 0
        data = load_idx_dataset(dataset, "train", args.data_dir)
        if not 0 <= index < len(data):
            raise UsageError(f"--index must be in 0..{len(data) - 1}, got {index}")
        image = data.images[index]
        title = f"{dataset} training image {index} (label {data.classes[int(data.labels[index])]})"
    path = preview_grid(image, aug, args.count, args.output, seed=args.seed, title=title)
    print(f"wrote {path}")
    return 0
