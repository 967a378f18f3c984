"""cnnlab train MODEL: train a model and write a run directory (--resume RUN_DIR continues one; --nproc N, or
torchrun, for several processes)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError
from ._augment import add_augment_arguments, augment_settings
from ._types import key_value, non_negative_int, positive_int

NAME = "train"
HELP = "train a model and write a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
        type=positive_int,
        metavar="N",
        help="N processes on this machine under PyTorch's launcher (torchrun); --batch-size stays the global batch",
    )
    p.add_argument(
        "--max-restarts",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="with --nproc: restart all processes up to K times after a failure, resuming from the newest checkpoint",
    )
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None, help="SyncBatchNorm (GPUs)")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="how long a process waits for the others (default 300)"
    )
    p.add_argument("--val-split", type=float, help="hold out this fraction of the training set (0: use the test set)")
    p.add_argument("--eval-batch-size", type=int, help="batch size of validation and the test report (500)")
    p.add_argument("--final-lr", type=float, help="cosine and linear schedules: the fraction of --lr at the end")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--checkpoint-every", type=int, metavar="EPOCHS")
    p.add_argument("--checkpoint-steps", type=int, metavar="STEPS")
    p.add_argument("--nonfinite", choices=["stop", "skip"], help="what a NaN/inf loss does")
    p.add_argument("--option", action="append", type=key_value, metavar="KEY=VALUE", help="model option (repeatable)")
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
    add_augment_arguments(p)


FOLDER_ONLY = ("image_size", "crop", "cache_dir", "val_dir")  # settings that only image folders (--data) use


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..run import train_run
    from ..train import TrainConfig
    from ..train.runtime import shutdown

    # Every flag named like a TrainConfig field overrides it; flags left out are None and change nothing.
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "model_options"}
    overrides = {k: getattr(args, k) for k in fields if hasattr(args, k)}
    overrides["augment"] = augment_settings(args)
    if args.option:
        overrides["model_options"] = dict(args.option)
    given = {k for k, v in overrides.items() if v is not None}
    if args.resume:
        for flag, used in (
            ("--config", args.config),
            ("--overwrite", args.overwrite),
            ("--compare-without", args.compare_without),
        ):
            if used:
                raise UsageError(f"{flag} does not go with --resume: a resume continues the run with its own settings")
        run_dir = Path(args.resume)
        cfg = _resume_config(run_dir, overrides, args.model)
    else:
        run_dir = None
        cfg = _new_run_config(args, overrides, given)
    if args.max_restarts and not args.nproc:  # else silently without effect (torchrun by hand takes its own)
        raise UsageError("--max-restarts goes with --nproc N (under torchrun by hand, give it to torchrun)")
    if args.nproc and "RANK" not in os.environ:  # checked here, then PyTorch's launcher runs this command N times
        from ..train.distributed import check_processes, launch

        check_processes(cfg, args.nproc)
        return launch(args.argv, args.nproc, args.max_restarts)
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
    from ..checkpoint import latest_checkpoint, list_checkpoints, no_checkpoint_error
    from ..runs import resume_config

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
    from ..runs import check_name_free, set_aside
    from ..train.config import load_config_file
    from ..train.recipes import check_fits_data, resolve_config

    file_values = load_config_file(args.config) if args.config else {}
    model = args.model or file_values.get("model")
    if not model:
        raise UsageError("name a model to train (see 'cnnlab models'), or --resume RUN_DIR")
    cfg = resolve_config(model, overrides, file_values, file_label=args.config or "config file")
    idle = [k for k in FOLDER_ONLY if k in given and not cfg.data]
    if idle:
        raise UsageError(f"--{idle[0].replace('_', '-')} is for image folders; it does nothing without --data")
    for k in ("momentum", "nesterov"):
        if k in given and cfg.optimizer != "sgd":
            raise UsageError(f"--{k} is for --optimizer sgd; it does nothing with {cfg.optimizer}")
    if args.compare_without and not cfg.augment:
        raise UsageError("--compare-without compares training with and without augmentation: add --augment")
    check_fits_data(cfg)
    also = (f"{cfg.run_name}-without-augmentation",) if args.compare_without and cfg.run_name else ()
    if args.overwrite and not cfg.run_name:
        raise UsageError("--overwrite replaces a run named with --name; without a name every run is new")
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
