"""cnnlab train MODEL: train a model and write a run directory (--resume RUN_DIR continues one; --nproc N, or
torchrun, for several processes). The settings' flags come from their declaration (cli/_settings.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError
from ..rundir import being_written, lock_holder
from ._settings import add_setting_arguments, given_settings
from ._types import non_negative_int, positive_int

NAME = "train"
HELP = "train a model and write a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="registered model name (not needed with --resume)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last checkpoint, with its own settings (it takes only "
        "--device, --threads, --compile, --data-dir, --cache-dir, --no-progress, and --data, --val-dir moved)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="a run named --name already exists: move it aside (to NAME.old-TIME; nothing is deleted) and start anew",
    )
    p.add_argument("--config", metavar="FILE.json", help="settings file (flags override it; may name the model)")
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
    p.add_argument("--no-sample", action="store_true", help="fail instead of falling back to the MNIST sample")
    p.add_argument(
        "--compare-without",
        action="store_true",
        help="with augmentation: also train without it and write the lesson's comparison",
    )
    add_setting_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..run import train_run
    from ..train.recipes import new_run_settings
    from ..train.runtime import shutdown

    flags = given_settings(args)
    run_dir = Path(args.resume) if args.resume else None
    if args.max_restarts and not args.nproc:  # else silently without effect (torchrun by hand takes its own)
        raise UsageError("--max-restarts goes with --nproc N (under torchrun by hand, give it to torchrun)")
    if args.resume:
        for flag, used in (("--config", args.config), ("--overwrite", args.overwrite)):
            if used:
                raise UsageError(f"{flag} does not go with --resume: a resume continues the run with its own settings")
        if args.compare_without:
            raise UsageError(
                "--compare-without does not go with --resume: a resume finishes the comparison its run began, and "
                "begins none (for one, train a new run with --compare-without)"
            )
        cfg = _resume_settings(run_dir, flags, args.model)
    else:
        cfg = new_run_settings(args.model, flags, args.config, args.compare_without)
        _claim_name(cfg, args.overwrite, args.compare_without)
    if args.nproc and "RANK" not in os.environ:  # checked here, then PyTorch's launcher runs this command N times
        from ..train.distributed import check_processes, launch

        check_processes(cfg, args.nproc)
        return launch(args.argv, args.nproc, args.max_restarts)
    result = train_run(
        cfg, run_dir, resume=run_dir is not None, allow_sample=not args.no_sample, compare_without=args.compare_without
    )
    shutdown()
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"\n{result.report.format()}\n\nrun directory: {result.run_dir}")
    return 0


def _resume_settings(run_dir: Path, flags: dict, model: str | None):
    """The run's own configuration with the flags a resume takes (cnnlab.runs.resume_config); one that does
    nothing for this run is refused, and so is a run with no checkpoint, before any data is loaded (nothing
    is ever trained from scratch under --resume)."""
    from ..checkpoint import latest_checkpoint, list_checkpoints, no_checkpoint_error
    from ..runs import resume_config

    cfg = resume_config(run_dir, flags, model)
    cfg.validate("TrainConfig", {key: "flag" for key, value in flags.items() if value is not None})
    if int(os.environ.get("RANK", 0)) == 0 and (holder := lock_holder(run_dir)):  # not rank 0's own lock, taken later
        raise being_written(run_dir, holder)
    if not list_checkpoints(run_dir):
        _, skipped = latest_checkpoint(run_dir)
        for line in skipped:
            print(f"skipped checkpoint {line}")
        raise no_checkpoint_error(run_dir, skipped)
    return cfg


def _claim_name(cfg, overwrite: bool, compare_without: bool) -> None:
    """The run's name against what is on disk, before any data is loaded (cnnlab.runs): taken is refused, or
    with --overwrite moved aside. Rank 0 claims it (under torchrun), and a restarted attempt resumes the run
    that its first attempt began."""
    from ..runs import check_name_free, named_run_dirs, set_aside

    if overwrite and not cfg.run_name:
        raise UsageError("--overwrite replaces a run named with --name; without a name every run is new")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if int(os.environ.get("RANK", 0)) != 0 or not first_attempt:
        return
    if not overwrite:
        check_name_free(cfg, compare_without)
        return
    for run_dir in named_run_dirs(cfg, compare_without):
        if moved := set_aside(run_dir):
            print(f"moved the earlier run {run_dir} aside to {moved}")
