"""Using a trained network: load a run, evaluate it (on its test split or on new labelled data), classify
files, write a Kaggle submission. The Python API's ``cnnlab.evaluate(model, data)`` is here too.

Everything goes through the data interface (data/source.py): a run's ``model.json`` keeps its data's
``describe()``, from which a file is prepared exactly as training prepared its images.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import torch

from .checkpoint import atomic_write_json, load_weights_into
from .data.arrays import ArraySource
from .data.datasets import ArrayDataset
from .data.loader import InputNorm, Preprocess
from .data.source import DataSource, open_eval_source, open_source, read_file
from .errors import UsageError
from .evaluation import make_report, plot_confusion
from .evaluation.metrics import Report, predict_logits
from .models import create_model
from .runs import RunError, read_model_info, read_run_config
from .train import Runtime, TrainConfig


def load_run(run_dir: str | Path, weights: str = "last"):
    """The trained model of a run directory, in eval mode, with its info (classes, normalisation, data)."""
    run_dir = Path(run_dir)
    info = read_model_info(run_dir)
    model = create_model(info["model"], **info["options"])
    path = run_dir / "weights" / f"{weights}.safetensors"
    if not path.exists():
        raise RunError(f"{path}: no weights yet (has the run finished an epoch?)")
    load_weights_into(model, path)
    model.cnnlab_input_norm = InputNorm.from_dict(info["input_norm"])
    return model.eval(), info


def run_config(run_dir: str | Path) -> TrainConfig:
    return read_run_config(run_dir)


# --- evaluation ----------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_source(
    model,
    source: DataSource,
    split: str = "test",
    runtime: Runtime | None = None,
    batch_size: int = 500,
    channels_last: bool = True,
    max_batches: int = 0,
) -> tuple[Report, dict[str, torch.Tensor]]:
    """The classification report of ``split`` and the probabilities of each group of views, by name.

    Each of the source's evaluation views is predicted once; a group of views (10-crop) averages their
    probabilities. The first group is the report's; the others are added to it by name."""
    runtime = runtime or Runtime("auto")
    model.to(runtime.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    pre = Preprocess(model.cnnlab_input_norm, runtime.device, channels_last)
    groups = source.eval_views()
    probs_of = {}
    for view in dict.fromkeys(v for views in groups.values() for v in views):
        logits = predict_logits(model, source, split, pre, runtime, batch_size, view, max_batches)
        probs_of[view] = torch.softmax(logits, dim=1)
    averaged = {name: torch.stack([probs_of[v] for v in views]).mean(0) for name, views in groups.items()}
    main = next(iter(averaged.values()))
    labels = source.labels(split)[: len(main)]
    report = make_report(main, labels, source.classes)
    if "10-crop" in averaged:
        report.ten_crop_accuracy = float((averaged["10-crop"].argmax(1) == labels).float().mean())
    report.skipped = list(source.skipped)
    return report, averaged


def write_evaluation(
    report: Report, view_probs: dict[str, torch.Tensor], source: DataSource, split: str, out_dir: Path, title: str
) -> None:
    """report.txt, report.json, predictions.csv, confusion_matrix.png and mistakes.png (the most confident
    errors of the report's views) in ``out_dir``."""
    from .evaluation.plots import plot_worst_mistakes

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.txt").write_text(report.format() + "\n")
    atomic_write_json(out_dir / "report.json", report.to_dict())
    probs = next(iter(view_probs.values()))
    labels = source.labels(split)[: len(probs)]
    write_predictions(view_probs, labels, report.classes, out_dir / "predictions.csv")
    plot_confusion(report.confusion, report.classes, out_dir / "confusion_matrix.png", title)
    wrong = (probs.argmax(1) != labels).nonzero().flatten()
    worst = wrong[probs[wrong].max(1).values.argsort(descending=True)][:16]
    plot_worst_mistakes(
        source.images(split, worst), probs[worst], labels[worst], report.classes, out_dir / "mistakes.png", title=title
    )


def write_predictions(view_probs: dict[str, torch.Tensor], labels, classes, path: Path) -> None:
    """One row per image, in the split's order: its label, then each view group's prediction and probability.
    Two runs on the same split compare image by image from these (a paired test is far less noisy than two
    accuracies, each with its own interval: benchmarks/paired_comparison.py)."""
    suffixes = [f"_{name.replace(' ', '_')}" if name else "" for name in view_probs]  # "_10-crop"; one view: ""
    columns = ["position", "label"] + [k + suffix for suffix in suffixes for k in ("predicted", "probability")]
    rows = [columns]
    per_view = [(p.argmax(1).tolist(), p.max(1).values.tolist()) for p in view_probs.values()]
    for i, label in enumerate(labels.tolist()):
        row = [i, classes[label]]
        for predicted, probability in per_view:
            row += [classes[predicted[i]], f"{probability[i]:.6f}"]
        rows.append(row)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def evaluate(model, data, batch_size: int = 500, device: str = "auto", precision: str = "fp32") -> Report:
    """Keras' ``model.evaluate``: the classification report of a trained model on labelled data: a data
    source (its "test" split), an ``ArrayDataset``, or ``(x, y)`` arrays."""
    if isinstance(data, tuple):
        data = ArraySource.from_arrays(*data)
    elif isinstance(data, ArrayDataset):
        data = ArraySource(data, data)
    if getattr(model, "cnnlab_input_norm", None) is None:
        raise UsageError("the model has no input normalisation: train it with cnnlab.fit or load it with load_run")
    report, _ = evaluate_source(model, data, "test", Runtime(device, precision), batch_size)
    return report


def evaluate_run(
    run_dir: str | Path,
    weights: str = "last",
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    cache_dir: str | None = None,
    allow_sample: bool = False,
    echo=print,
) -> tuple[Report, Path | None]:
    """A run's report on its own test split, or with ``data`` on new labelled images (a folder with Kaggle
    names or class subfolders, or MNIST-style IDX files), written to ``RUN/eval-<folder>/``."""
    run_dir = Path(run_dir)
    model, info = load_run(run_dir, weights)
    cfg = run_config(run_dir)
    runtime = Runtime(device, cfg.precision)
    batch_size = batch_size or cfg.eval_batch_size
    if data:
        source = open_eval_source(data, info["data"], info["classes"], cache_dir or cfg.cache_dir, echo)
        out_dir = run_dir / f"eval-{slug(data)}"
    else:
        if data_dir:
            cfg.data_dir = data_dir
        source = open_source(cfg, allow_sample=allow_sample, echo=echo)
        for note in source.notes:  # what was evaluated: the sample instead of full MNIST, skipped files
            if not note.startswith("validation:"):
                echo(note)
        out_dir = None
    report, probs = evaluate_source(model, source, "test", runtime, batch_size, cfg.channels_last)
    if out_dir is not None:
        write_evaluation(report, probs, source, "test", out_dir, f"{info['model']} on {data}")
    return report, out_dir


def slug(path: str | Path) -> str:
    """'../shared/data/dogs-vs-cats-small/train' -> 'dogs-vs-cats-small_train' (the last two folder names)."""
    parts = Path(path).resolve().parts[-2:]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))


# --- prediction ----------------------------------------------------------------------------------------


@torch.no_grad()
def predict_files(
    run_dir,
    paths,
    weights: str = "last",
    top: int = 3,
    invert: str = "auto",
    device: str = "cpu",
    batch_size: int = 64,
    runtime: str = "auto",
):
    """[(path, [(class, probability), ...])] for each image file, best first. ``runtime``: onnxruntime on the
    run's ONNX export, PyTorch, or auto (see export.onnx_predictor_for_run)."""
    from .export import onnx_predictor_for_run

    predictor = onnx_predictor_for_run(run_dir, weights, runtime)
    if predictor is not None:
        info = predictor.info  # the export carries model.json's classes, input size and data description

        def predict(batch):
            return torch.from_numpy(predictor.predict_proba(batch.numpy()))

    else:
        model, info = load_run(run_dir, weights)
        rt = Runtime(device, run_config(run_dir).precision)
        model.to(rt.device)
        pre = Preprocess(model.cnnlab_input_norm, rt.device, channels_last=False)

        def predict(batch):
            with rt.autocast():
                return torch.softmax(model(pre(batch.to(rt.device))).float(), dim=1).cpu()

    read = read_file(info["data"], invert)
    classes = info["classes"]
    out = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        probs = predict(torch.stack([read(p) for p in chunk]))
        for path, p in zip(chunk, probs):
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
    batch_size=None,
    echo=print,
) -> Path:
    """Kaggle's ``id,label`` file for an unlabelled folder (test1/123.jpg): the probability of the positive
    class (by default the last, 'dog' in cats vs. dogs) or, with ``hard``, 0/1; ids sorted numerically."""
    from .data.folders import kaggle_id
    from .data.imagedata import FolderSource

    model, info = load_run(run_dir, weights)
    if info["data"].get("kind") != "folder":
        raise RunError(f"{run_dir}: a Kaggle submission needs a model trained on an image folder")
    cfg = run_config(run_dir)
    classes = info["classes"]
    positive = positive or classes[-1]
    if positive not in classes:
        raise UsageError(f"--positive {positive!r} is not one of the run's classes {classes}")
    source = FolderSource.for_prediction(folder, info["data"], cache_dir, echo)
    runtime = Runtime(device, cfg.precision)
    model.to(runtime.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    pre = Preprocess(model.cnnlab_input_norm, runtime.device, cfg.channels_last)
    views = source.eval_views()["10-crop" if ten_crop else "centre crop"]  # the centre alone: one pass, not ten
    batch_size = batch_size or cfg.eval_batch_size
    probs = torch.stack(
        [torch.softmax(predict_logits(model, source, "test", pre, runtime, batch_size, v), dim=1) for v in views]
    ).mean(0)
    column = probs[:, classes.index(positive)].tolist()
    rows = sorted(
        ((kaggle_id(f), p) for f, p in zip(source.files, column)), key=lambda r: (isinstance(r[0], str), r[0])
    )
    output = Path(output)
    with open(output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        for ident, p in rows:
            writer.writerow([ident, int(p >= 0.5) if hard else f"{p:.6f}"])
    for message in source.skipped:
        echo(f"skipped: {message}")
    return output
