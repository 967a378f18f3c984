"""cnnlab predict RUN_DIR IMAGE...: classify image files, or write a Kaggle submission for a folder."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..rundir import RunDir
from ._types import add_weights_argument, output_named, positive_int

NAME = "predict"
HELP = "classify image files with a trained run, or write a Kaggle submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("images", nargs="*")
    parser.add_argument(
        "--kaggle", metavar="FOLDER", help="an unlabelled folder (Kaggle's test1/): write id,label rows"
    )
    parser.add_argument(
        "-o", "--output", type=output_named(".csv"), help="the submission file (with --kaggle; default: submission.csv)"
    )
    parser.add_argument("--positive", help="the class whose probability is the label (default: the last, e.g. dog)")
    parser.add_argument("--hard", action="store_true", help="labels 0/1 instead of probabilities")
    parser.add_argument("--single-crop", action="store_true", help="the centre crop only, not 10-crop averaging")
    parser.add_argument("--cache-dir", help="--kaggle: where the decoded cache goes")
    add_weights_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--batch-size", type=positive_int, help="default: 64 for image files, the run's eval batch size for --kaggle"
    )
    parser.add_argument("--no-progress", action="store_true", help="--kaggle: no progress bar")
    parser.add_argument("--top", type=positive_int, help="image files: the best N classes (default 3)")
    parser.add_argument(
        "--invert",
        choices=["auto", "yes", "no"],
        help="grey models: invert dark-on-light images (auto, the default: by the border's brightness)",
    )
    parser.add_argument(
        "--runtime",
        choices=["auto", "onnx", "torch"],
        help="image files: onnxruntime on RUN/model.onnx (exported if missing), PyTorch, or auto (the default): "
        "onnxruntime when installed and a current export exists (see cnnlab.inference.AUTO_RUNTIME)",
    )


KAGGLE_ONLY = ("output", "positive", "hard", "single_crop", "cache_dir", "no_progress")
FILES_ONLY = ("top", "invert")


def run(args: argparse.Namespace) -> int:
    from ..inference import kaggle_submission, predict_files

    # Image files and a --kaggle folder take different options; one given to the other mode would do nothing.
    if args.kaggle and args.images:
        raise UsageError("give image files to classify, or --kaggle FOLDER, not both")
    if not args.kaggle and not args.images:
        raise UsageError("give image files to classify, or --kaggle FOLDER")
    if args.kaggle and args.runtime == "onnx":
        raise UsageError("--runtime onnx classifies image files; a --kaggle submission (10-crop) runs in PyTorch")
    if idle := [k for k in (FILES_ONLY if args.kaggle else KAGGLE_ONLY) if getattr(args, k) not in (None, False)]:
        mode = "a --kaggle submission (10-crop, in PyTorch)" if args.kaggle else "image files"
        what = "image files" if args.kaggle else "a --kaggle submission"
        flag = "-o/--output" if idle[0] == "output" else "--" + idle[0].replace("_", "-")
        raise UsageError(f"{flag} is for {what}; it does nothing for {mode}")
    RunDir(args.run_dir).notice_unfinished()
    if args.kaggle:
        path = kaggle_submission(
            args.run_dir,
            args.kaggle,
            args.output or "submission.csv",
            args.weights,
            args.positive,
            args.hard,
            not args.single_crop,
            args.cache_dir,
            args.device,
            args.batch_size,
            progress=not args.no_progress,
        )
        print(f"wrote {path}")
        return 0
    ranked_files = predict_files(
        args.run_dir,
        args.images,
        args.weights,
        args.top or 3,
        args.invert or "auto",
        args.device,
        args.batch_size or 64,
        args.runtime or "auto",
    )
    for path, ranked in ranked_files:
        best = ", ".join(f"{c} {p:.3f}" for c, p in ranked)
        print(f"{path}: {best}")
    return 0
