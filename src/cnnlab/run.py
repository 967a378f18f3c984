"""A training run from start to finish, and the run directory it leaves behind.

``train_run`` reads top to bottom: resolve where it runs, open the data source, claim the run directory,
build the model, train it with ``fit``, evaluate it on the test split and write everything a person wants to
look at afterwards. It knows data only through the data interface (data/source.py) and its run directory
only through ``rundir.RunDir`` (the list of files is there); with several processes (torchrun) every process
computes and rank 0 alone names the run, locks it and writes.
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from .augment import Augment, preview_grid
from .checkpoint import list_checkpoints
from .data.source import DataSource, open_source
from .environment import environment_info
from .errors import CnnlabError, TrainingInterrupted
from .evaluation.plots import plot_comparison, plot_history
from .inference import evaluate_source, write_evaluation
from .models import create_model, get_model_entry
from .rundir import RunDir
from .runs import FOLDERS, baseline_name, new_run_dir, resume_config
from .summary import summary
from .train import Callback, Runtime, TrainConfig, fit, run_directory_callbacks
from .train.checks import check_fits_source, check_model_fits_source
from .train.recipes import check_classes, resolve_config  # noqa: F401  (resolve_config: the benchmarks import it here)


def claim_run_dir(
    cfg: TrainConfig, run_dir: Path | None, resume: bool, rt: Runtime, compare_without: bool
) -> tuple[Path, bool]:
    """Rank 0 names the run (or takes the one given) and tells the others. Under torchrun with ``--max-restarts``,
    a restarted attempt finds the run its first attempt began (a marker keyed by torchrun's run id) and resumes it
    from its newest checkpoint (or starts it over when it has none yet), without anyone typing --resume."""
    decision = None
    if rt.is_main:
        marker = elastic_marker(cfg)
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0
        if run_dir is None and marker is not None and restarted and marker.is_file():
            run_dir = Path(marker.read_text().strip())
            resume = bool(list_checkpoints(run_dir))  # a failure before the first checkpoint starts it over
        elif run_dir is None:
            run_dir = new_run_dir(cfg, compare_without)
            if marker is not None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(run_dir))
        decision = (str(run_dir), resume)
    run_dir, resume = rt.broadcast_object(decision)
    return Path(run_dir), resume


def elastic_marker(cfg: TrainConfig) -> Path | None:
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if not run_id or "RANK" not in os.environ:
        return None
    return Path(cfg.out_dir) / ".torchrun" / run_id


def build_model(cfg: TrainConfig, source: DataSource) -> torch.nn.Module:
    """The configured model, with the class count and channels of the data unless the options say otherwise."""
    options = {**cfg.model_options}
    known = get_model_entry(cfg.model).options()
    for key, value in (("num_classes", len(source.classes)), ("in_chans", source.image_size[0])):
        if key in known:
            options.setdefault(key, value)
    check_classes(options, source.classes)
    return create_model(cfg.model, **options)


@dataclass
class RunResult:
    run_dir: Path
    history: dict
    report: object
    notes: list[str]


def train_run(
    cfg: TrainConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    allow_sample: bool = True,
    echo=print,
    compare_without: bool = False,
) -> RunResult:
    """Train as ``cfg`` says and leave a complete run directory; ``resume`` continues ``run_dir``."""
    # config.json is read again from anywhere (evaluate, --resume): its folders as absolute paths (an older run's
    # relative ones as this resume reads them)
    cfg = cfg.updated(**{key: os.path.abspath(getattr(cfg, key)) for key in FOLDERS if getattr(cfg, key)})
    rt = Runtime(cfg.device, cfg.precision, cfg.threads, cfg.timeout)
    if not rt.is_main:
        echo = rt.print  # prints on rank 0 only: here, nothing
    # Rank 0 first: a decoded-image cache is built once, and a refusal is said once. Before the run directory
    # exists, so that a refused run leaves nothing behind: the data, the model (built from the seed), then the data
    # against the settings and the model's layers, and the model against the data.
    with rt.main_first():
        source = open_source(cfg, allow_sample, echo)
        for note in source.notes:
            echo(note)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, source)
        model.cnnlab_initialised = True  # built from cfg.seed just above: fit need not build it again to check
        check_fits_source(cfg, source, rt, model)
        check_model_fits_source(model, source)
    compare_without = compare_without and bool(cfg.augment)  # there is nothing to compare without augmentation
    run_dir, resume = claim_run_dir(cfg, Path(run_dir) if run_dir else None, resume, rt, compare_without)
    run = RunDir(run_dir)
    baseline_dir = run_dir.with_name(baseline_name(run_dir.name))
    # A resume finishes the comparison its run began: the baseline's folder, claimed with the run, says it did (rank
    # 0 reads it: on several machines only its disk may hold the run)
    owed = rt.broadcast_object(bool(cfg.augment) and resume and rt.is_main and owes_comparison(cfg, baseline_dir))
    compare_without = compare_without or owed
    if compare_without and rt.is_main:
        baseline_dir.mkdir(exist_ok=True)
    with run.lock() if rt.is_main else nullcontext():
        model.cnnlab_input_norm = source.input_norm()
        info = {
            "model": cfg.model,
            "options": model.cnnlab_options,
            "classes": list(source.classes),
            "input_size": list(source.image_size),
            "input_norm": model.cnnlab_input_norm.to_dict(),
            "dataset": source.name,
            "data": source.describe(),  # how a file becomes input, so that predict prepares it as training did
        }
        table = summary(model, source.image_size)  # also gives the FLOPs for compute.json

        def write_settings(logs=None):
            run.write_json("config.json", cfg.record())
            run.write_model_info(info)
            run.write_json("environment.json", environment_info(rt.device, torch.get_num_threads()))
            run.write_text("summary.txt", table.format() + "\n")

        callbacks = run_directory_callbacks(run_dir, info)
        if rt.is_main and resume:  # once fit has taken the checkpoint: a refused resume (other data) changes no file
            callbacks.append(settings := Callback())
            settings.on_train_begin = write_settings
        elif rt.is_main:
            write_settings()
            echo(table.format())
        echo(f"run directory: {run_dir}" + (f" ({rt.world_size} processes)" if rt.distributed else ""))
        if cfg.augment:
            echo("augmentation: " + ", ".join(f"{k}={v}" for k, v in cfg.augment.items()))
        history = fit(model, source, None, cfg, callbacks, run_dir=run_dir, resume=resume, runtime=rt)
        # Every process evaluates its shard of the test split; rank 0 writes the report.
        report, probs = evaluate_source(
            model, source, "test", rt, cfg.eval_batch_size, cfg.channels_last, 2 if cfg.dry_run else 0
        )
        report.dry_run = cfg.dry_run
        if rt.is_main:
            run.write_json("compute.json", measured_compute(table.flops, history.history, source, cfg, rt))
            title = f"{cfg.model} on {source.name}"
            run.write_png("curves.png", lambda f: plot_history(history.history, f, title))
            write_evaluation(report, probs, source, "test", run, title + " test", model)
            run.write_text("notes.txt", "\n".join(source.notes) + "\n")
            write_pictures(run, model, info, source, cfg.augment, cfg.seed)
            if (marker := elastic_marker(cfg)) is not None:  # finished: a later restart has nothing to resume
                marker.unlink(missing_ok=True)
    if rt.is_main:  # once the lock is let go: the page shows the state everyone else sees, finished
        run.write_report()
    if compare_without:
        baseline_cfg = baseline_config(cfg, baseline_dir)
        echo(f"\ntraining the same settings without augmentation, for the comparison: {baseline_cfg.run_name}")
        again = resume and bool(list_checkpoints(baseline_dir))
        try:
            baseline = train_run(baseline_cfg, baseline_dir, again, allow_sample, echo)
        except TrainingInterrupted as e:  # resuming this run finishes the baseline and writes the comparison
            raise TrainingInterrupted(str(e).replace(str(baseline_dir), str(run_dir)), e.signum) from None
        if rt.is_main:
            write_comparison(run, history.history, report, baseline.history, baseline.report, echo)
            run.write_report()  # now with the comparison
    return RunResult(run_dir, history.history, report, source.notes)


def measured_compute(flops: int, history: dict, source: DataSource, cfg: TrainConfig, rt: Runtime) -> dict:
    """compute.json: the images a run trained and validated on, their FLOPs, and the rate its device reached."""
    from .analysis.compute import run_compute

    epochs_run = len(history.get("loss", []))
    trained, evaluated = source.size("train") * epochs_run, source.size("val") * epochs_run
    if cfg.dry_run:  # two batches of one epoch, validated on two batches a process
        trained = min(trained, 2 * cfg.batch_size)
        evaluated = min(evaluated, 2 * cfg.eval_batch_size * rt.world_size)
    return run_compute(flops, trained, evaluated, sum(history.get("seconds", [])), rt.device, cfg.precision)


def baseline_config(cfg: TrainConfig, folder: Path) -> TrainConfig:
    """--compare-without's second run, in ``folder``: the run's settings without augmentation."""
    return cfg.updated(augment=None, clean_epochs=0, run_name=folder.name, out_dir=str(folder.parent))


def owes_comparison(cfg: TrainConfig, folder: Path) -> bool:
    """Whether a resume of a run of ``cfg`` finishes its comparison: the baseline's ``folder``, claimed empty with the
    run, holds nothing yet (a lock at most: stopped before its config.json) or a run of its baseline's settings (a run
    of that name trained by itself is not one)."""
    if not folder.is_dir() or {path.name for path in folder.iterdir()} <= {".lock"}:
        return folder.is_dir()
    where = {"out_dir": None, "run_name": None}  # where the runs lie (moved since, or named relative), not settings
    try:  # a resume's check of settings against the run's: one that a resume may not change differs
        resume_config(folder, {**baseline_config(cfg, folder).to_dict(), **where})
    except CnnlabError:
        return False
    return True


def write_pictures(run: RunDir, model, info: dict, source: DataSource, augment: dict | None, seed: int) -> None:
    """The lesson's pictures: the first layer's kernels, and one training image with its augmented copies."""
    from .explain import conv_layers, filters_png

    if conv_layers(model):  # a network of dense layers alone has no kernels to show
        run.write_bytes("filters.png", filters_png(model.cpu(), info))  # training is over: drawn on the CPU
    if augment:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fit has given the settings' advice (the shear's units) already
            transform = Augment(**augment)
        image = source.images("train", [0])[0]
        run.write_png("augment_preview.png", lambda f: preview_grid(image, transform, 18, f, seed=seed))


def write_comparison(run: RunDir, with_aug: dict, with_report, without: dict, without_report, echo=print) -> None:
    """The lesson's comparison: curves with and without augmentation, and the gap between train and validation."""
    lines = [
        "                       with augmentation   without",
        f"test accuracy          {with_report.accuracy:>17.4f}   {without_report.accuracy:.4f}",
        f"epochs trained         {len(with_aug['loss']):>17d}   {len(without['loss'])}",  # early stopping: unequal
        f"final train accuracy   {with_aug['accuracy'][-1]:>17.4f}   {without['accuracy'][-1]:.4f}",
        f"final val accuracy     {with_aug['val_accuracy'][-1]:>17.4f}   {without['val_accuracy'][-1]:.4f}",
        f"train - val loss gap   {with_aug['loss'][-1] - with_aug['val_loss'][-1]:>17.4f}   "
        f"{without['loss'][-1] - without['val_loss'][-1]:.4f}",
        f"seconds per epoch      {sum(with_aug['seconds']) / len(with_aug['seconds']):>17.1f}   "
        f"{sum(without['seconds']) / len(without['seconds']):.1f}",
    ]
    text = "\n".join(lines)
    run.write_text("comparison.txt", text + "\n")
    run.write_png("comparison.png", lambda f: plot_comparison(with_aug, without, f))
    echo("\n" + text)
