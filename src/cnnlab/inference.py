"""Using a trained network: load a run, evaluate it (on its test split or on new labelled data), classify
files, write a Kaggle submission. The Python API's ``cnnlab.evaluate(model, data)`` is here too.

Everything goes through the data interface (data/source.py): a run's ``model.json`` keeps its data's
``describe()``, from which a file is prepared exactly as training prepared its images.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import sha256_file
from .data.arrays import ArraySource, as_array_dataset
from .data.datasets import ArrayDataset
from .data.folders import folder_slug, scan_folder
from .data.imagedata import FolderSource
from .data.loader import Preprocess
from .data.source import DataSource, kind_of, open_eval_source, open_source, read_file
from .errors import DataError, RunError, UsageError, expect_type, path_argument, whole_number
from .evaluation.metrics import Report, make_report, predict_logits
from .evaluation.plots import plot_confusion, plot_worst_mistakes, worst_mistakes
from .export import JSON_KEYS, ExportError, default_path, export_run, importable, require
from .rundir import RunDir, atomic_write_bytes
from .train import Runtime, TrainConfig
from .train.runtime import pick_device

MISTAKES_EXPLAINED = 6  # Grad-CAM rows of the report's worst mistakes: enough to see a pattern, quick to draw


def load_run(run_dir: str | Path, weights: str = "last"):
    """The trained model of a run directory, in eval mode, with its info (classes, normalisation, data)."""
    return RunDir(run_dir).load_model(weights)


def run_config(run_dir: str | Path) -> TrainConfig:
    return RunDir(run_dir).config()


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
    report: Report,
    view_probs: dict[str, torch.Tensor],
    source: DataSource,
    split: str,
    out: RunDir,
    title: str,
    model: torch.nn.Module | None = None,
) -> None:
    """report.txt, report.json, predictions.csv, confusion_matrix.png and mistakes.png (the most confident
    errors of the report's views) in ``out``; with ``model``, mistakes_gradcam.png: where it looked in them."""
    out.write_text("report.txt", report.format() + "\n")
    out.write_json("report.json", report.to_dict())
    probs = next(iter(view_probs.values()))
    labels = source.labels(split)[: len(probs)]
    names = None  # the file of each image, where the data comes from files (an image folder)
    if isinstance(source, FolderSource):
        part = source.splits[split]
        names = [part.cache.files[i] for i in part.indices]
    out.write_csv("predictions.csv", prediction_rows(view_probs, labels, report.classes, names))
    out.write_png("confusion_matrix.png", lambda f: plot_confusion(report.confusion, report.classes, f, title))
    worst = torch.from_numpy(worst_mistakes(probs.numpy(), labels.numpy(), 16))
    images = source.images(split, worst)
    out.write_png(
        "mistakes.png",
        lambda f: plot_worst_mistakes(images, probs[worst], labels[worst], report.classes, f, title=title),
    )
    if model is not None and len(worst) and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        from .explain import mistakes_png  # Grad-CAM: where the convolutions looked

        few = slice(0, MISTAKES_EXPLAINED)
        out.write_bytes(
            "mistakes_gradcam.png", mistakes_png(model, report.classes, images[few], labels[worst][few], ("gradcam",))
        )
    else:  # none to show: an earlier evaluation's picture in the same folder is not this one's
        (out.path / "mistakes_gradcam.png").unlink(missing_ok=True)


def prediction_rows(view_probs: dict[str, torch.Tensor], labels, classes, names: list[str] | None) -> list[list]:
    """predictions.csv: one row per image, in the split's order: its position (and file, for an image folder),
    its label, then each view group's prediction and probability. Two runs on the same split compare image by
    image from these (a paired test is far less noisy than two accuracies, each with its own interval:
    benchmarks/paired_comparison.py)."""
    suffixes = [f"_{name.replace(' ', '_')}" if name else "" for name in view_probs]  # "_10-crop"; one view: ""
    file_column = ["file"] if names is not None else []
    rows = [["position", *file_column, "label"] + [k + s for s in suffixes for k in ("predicted", "probability")]]
    per_view = [(p.argmax(1).tolist(), p.max(1).values.tolist()) for p in view_probs.values()]
    for i, label in enumerate(labels.tolist()):
        row = [i, *([names[i]] if names is not None else []), classes[label]]
        for predicted, probability in per_view:
            row += [classes[predicted[i]], f"{probability[i]:.6f}"]
        rows.append(row)
    return rows


def evaluate(model, data, batch_size: int = 500, device: str = "auto", precision: str = "fp32") -> Report:
    """Keras' ``model.evaluate``: the classification report of a trained model on labelled data: a data
    source (its "test" split), an ``ArrayDataset``, or ``(x, y)`` arrays."""
    expect_type(model, torch.nn.Module, "evaluate(): model", "a trained model (load_run or cnnlab.fit gives one)")
    expect_type(data, (DataSource, ArrayDataset, tuple), "evaluate(): data", "a DataSource, an ArrayDataset or (x, y)")
    whole_number(batch_size, "evaluate(): batch_size")
    if isinstance(data, tuple):
        if len(data) != 2:
            raise UsageError(f"evaluate(): data as arrays is (x, y), images and labels; got a tuple of {len(data)}")
        data = as_array_dataset(*data)
    if isinstance(data, ArrayDataset):
        data = ArraySource(data, test=data)
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
    names or class subfolders, or MNIST-style IDX files), written to ``RUN/eval-<parent>_<folder>/``."""
    run = RunDir(run_dir)
    if cache_dir and not kind_of(description := run.model_info()["data"]).caches:  # before any work
        kind = description["kind"]
        raise UsageError(f"--cache-dir {cache_dir}: this run's data ({kind}) are read without a cache; leave it out")
    model, info = run.load_model(weights)
    cfg = run.config()
    runtime = Runtime(device, cfg.precision)
    batch_size = batch_size or cfg.eval_batch_size
    cfg.cache_dir = cache_dir or cfg.cache_dir
    if data:
        source = open_eval_source(data, info["data"], info["classes"], cfg.cache_dir, echo)
        out_dir = run.path / f"eval-{folder_slug(data)}"
    else:
        if data_dir:
            cfg.data_dir = data_dir
            cfg.validate(origins={"data_dir": "flag"})  # a run of an image folder: refused, not silently ignored
        elif cfg.data_dir and not Path(cfg.data_dir).is_dir():  # a relative path reads from where cnnlab runs
            raise RunError(
                f"{run.path / 'config.json'}: the run's data_dir {cfg.data_dir!r} is not a folder from here; "
                "give --data-dir DIR"
            )
        source = open_source(cfg, allow_sample=allow_sample, echo=echo, training=False)
        if list(source.classes) != info["classes"]:  # a class folder added or renamed since: every label would shift
            where, now = cfg.val_dir or cfg.data or cfg.data_dir or cfg.dataset, ", ".join(source.classes)
            raise DataError(f"{where}: classes ({now}) are not the run's ({', '.join(info['classes'])}) any more")
        for note in source.notes:  # what was evaluated: the sample instead of full MNIST, skipped files
            if not note.startswith("validation:"):
                echo(note)
        out_dir = None
    report, probs = evaluate_source(model, source, "test", runtime, batch_size, cfg.channels_last)
    if out_dir is not None:
        write_evaluation(report, probs, source, "test", RunDir(out_dir), f"{info['model']} on {data}", model)
    return report, out_dir


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
    run's ONNX export, PyTorch, or auto (see ``onnx_predictor_for_run``)."""
    expect_type(paths, (list, tuple), "predict_files(): paths", "a list of image files")
    paths = [path_argument(p, "predict_files(): paths") for p in paths]
    top, batch_size = whole_number(top, "predict_files(): top"), whole_number(batch_size, "predict_files(): batch_size")
    RunDir(run_dir).weights(weights)  # a run directory and a weights name, checked before onnxruntime is asked
    pick_device(device)  # and the device, which onnxruntime would not use
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

    if invert != "auto" and info["input_size"][0] != 1:  # else silently without effect
        raise UsageError(f"--invert {invert} is for grey models; {run_dir} reads colour images as they are")
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


def kaggle_ids(folder) -> dict[str, int]:
    """{file name: id} of an unlabelled Kaggle folder (test1/123.jpg -> 123), before any image is decoded. A name
    that is not a number, or two files with one id (1.jpg, 01.jpg, 1.png), would make a wrong submission."""
    files = scan_folder(folder, unlabelled=True).files
    if odd := [f.name for f in files if not re.fullmatch(r"[0-9]+", f.stem)]:
        raise DataError(
            f"{Path(folder) / odd[0]}: not a Kaggle test file name (NUMBER.jpg: the number is the submission's id)"
            + (f"; {len(odd) - 1} more like it" if len(odd) > 1 else "")
        )
    ids = {f.name: int(f.stem) for f in files}
    by_id: dict[int, list[str]] = {}
    for name, ident in ids.items():
        by_id.setdefault(ident, []).append(name)
    if clash := next((names for names in by_id.values() if len(names) > 1), None):
        raise DataError(f"{folder}: {', '.join(clash)} would all be id {ids[clash[0]]}; keep one of them")
    return ids


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
    progress=True,
) -> Path:
    """Kaggle's ``id,label`` file for an unlabelled folder (test1/123.jpg): the probability of the positive
    class (by default the last, 'dog' in cats vs. dogs) or, with ``hard``, 0/1; ids sorted numerically."""
    run, output = RunDir(run_dir), Path(output)
    model, info = run.load_model(weights)
    if info["data"].get("kind") != "folder":
        raise RunError(f"{run_dir}: a Kaggle submission needs a model trained on an image folder")
    cfg = run.config()
    batch_size = batch_size or cfg.eval_batch_size
    classes = info["classes"]
    positive = positive or classes[-1]
    if positive not in classes:
        raise UsageError(f"--positive {positive!r} is not one of the run's classes {classes}")
    run.check_output(output)
    ids = kaggle_ids(folder)  # before decoding: a wrong name is refused at once
    runtime = Runtime(device, cfg.precision)  # a device that is not here is refused before any decoding
    source = FolderSource.for_prediction(folder, info["data"], cache_dir, echo, progress)
    if source.skipped:  # Kaggle scores a file with a row for every id: a short one is refused or misread
        unread = "; ".join(source.skipped[:3]) + ("; ..." if len(source.skipped) > 3 else "")
        raise DataError(f"{folder}: {len(source.skipped)} image(s) do not decode, so they would have no row: {unread}")
    model.to(runtime.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    pre = Preprocess(model.cnnlab_input_norm, runtime.device, cfg.channels_last)
    views = source.eval_views()["10-crop" if ten_crop else "centre crop"]  # the centre alone: one pass, not ten
    n = source.size("test")
    bar = tqdm(total=n * len(views), unit="crop", desc="predicting", disable=not progress, file=sys.stderr)
    start = time.perf_counter()
    summed = torch.zeros(n, len(classes))
    for view in views:
        logits = predict_logits(model, source, "test", pre, runtime, batch_size, view, progress=bar)
        summed += torch.softmax(logits, dim=1)
    bar.close()
    seconds = time.perf_counter() - start
    echo(f"{n:,} images, {len(views)} view(s) each, in {seconds:.1f}s: {n / seconds:.1f} images/s on {runtime.device}")
    column = (summed / len(views))[:, classes.index(positive)].tolist()
    rows = sorted((ids[Path(f).name], p) for f, p in zip(source.files, column))
    lines = ["id,label"] + [f"{ident},{int(p >= 0.5) if hard else f'{p:.6f}'}" for ident, p in rows]
    atomic_write_bytes(output, ("\n".join(lines) + "\n").encode())
    return output


# --- onnxruntime -----------------------------------------------------------------------------------------

# Model name -> the runtime `cnnlab predict --runtime auto` uses when onnxruntime is installed and the run holds
# a current ONNX export (else PyTorch); a model not listed uses onnxruntime too. benchmarks/inference_speed.py
# measured images/s at batch 1 and 64, PyTorch eager vs onnxruntime, back to back on a quiet 2-core AMD EPYC
# (benchmarks/results/inference_speed.json): onnxruntime was faster in every pair, LeNet-5 5.6-5.7x at batch 1
# and 1.6-2.2x at 64, AlexNet-BN 1.5-1.6x and 1.4x. `auto` never exports by itself (a 245 MB file and seconds of
# work the user did not ask for).
AUTO_RUNTIME: dict[str, str] = {"lenet5": "onnx", "alexnet_bn": "onnx"}
RUNTIMES = ("auto", "onnx", "torch")


class OnnxPredictor:
    """An exported cnnlab model in onnxruntime (CPU): ``predict_proba(uint8 or 0-255 float (N, C, H, W))``."""

    def __init__(self, path, threads: int = 0):
        require("onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's choice (one per physical core)
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) share no base
            raise ExportError(f"{self.path}: not a readable ONNX model ({str(e).splitlines()[0]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if missing := [k for k in ("classes", "input_size") if k not in self.metadata]:
            raise ExportError(f"{self.path}: not a cnnlab export (no {', '.join(missing)} in its metadata)")
        self.info = {k: json.loads(v) if k in JSON_KEYS else v for k, v in self.metadata.items()}
        self.classes = self.info["classes"]
        self.input_size = tuple(self.info["input_size"])
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, pixels, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, num_classes), float32, for raw pixels (N, C, H, W) in 0-255."""
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_size:
            raise UsageError(f"{self.path}: expects pixels (N, {', '.join(map(str, self.input_size))}), got {x.shape}")
        parts = [
            self.session.run(None, {self.input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)


def _note(message: str) -> None:
    print(f"cnnlab: {message}", file=sys.stderr)


def onnx_predictor_for_run(run_dir, weights: str = "last", runtime: str = "auto", echo=_note) -> OnnxPredictor | None:
    """The run's ONNX model in onnxruntime, or None where PyTorch is to predict.

    ``torch``: None. ``onnx``: the run's export of these weights (RUN/model.onnx for last), exported now when
    missing or made from other weights (a resumed run's newer last.safetensors): the user asked for
    onnxruntime. ``auto``: onnxruntime when it is installed, ``AUTO_RUNTIME`` does not say torch for this
    model, and a current export exists; else None (auto never exports, and tells when a file is stale).
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch":
        return None
    run = RunDir(run_dir)
    path = default_path(run.path, "onnx", weights)
    if runtime == "auto":
        if not path.is_file() or not importable("onnxruntime"):
            return None
        if AUTO_RUNTIME.get(run.model_info()["model"], "onnx") != "onnx":
            return None
    else:
        require("onnxruntime")  # exporting needs onnx and onnxscript too: export_run asks for them when it must
    weights_file = run.weights(weights)
    if path.is_file() and weights_file.is_file():
        try:
            predictor = OnnxPredictor(path)
        except ExportError as e:
            if runtime == "onnx":
                raise
            echo(f"{e}: predicting in PyTorch")  # auto: an unreadable file is no current export
            return None
        if predictor.metadata.get("weights_sha256") == sha256_file(weights_file):
            return predictor
        if runtime == "auto":
            echo(f"{path} holds other weights than {weights_file}: predicting in PyTorch ('cnnlab export' renews it)")
            return None
        echo(f"{path} holds other weights than {weights_file}: exporting it again")
    elif runtime == "auto":
        return None  # an export without its weights: auto never exports, PyTorch says what is missing
    export_run(run_dir, "onnx", path, weights)
    echo(f"exported {path} for onnxruntime")
    return OnnxPredictor(path)
