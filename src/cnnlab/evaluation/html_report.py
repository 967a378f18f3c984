"""The run report page: one self-contained ``report.html`` per run directory, a comparison page for several runs,
and the table of runs that ``cnnlab runs`` prints. Rendering only: the run directory (``rundir.RunDir``) reads
the files tolerantly into a record (``rundir.RunRecord``, the ``record`` below) and writes the page.

The page is made to be looked at and passed around: every picture is embedded as a base64 data URI, the style is
inline, and there is no script, so it opens from a mail attachment or a file share with no network. Any file of
the run may be missing (an old or unfinished run) or unreadable (a killed writer); the page then says "not
recorded" or "could not be read" in that section instead of failing. The HTML is in jinja2 templates
(``templates/``) with autoescaping: a value from a run (a folder name, a class name) is text, never markup.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import Counter
from functools import cache
from pathlib import Path

from .plots import plot_runs

NOT_RECORDED = "not recorded"

SECTIONS = (  # (anchor, heading): the page's order
    ("configuration", "Configuration and data"),
    ("summary", "Model summary"),
    ("curves", "Training curves"),
    ("evaluation", "Classification report"),
    ("confusion", "Confusion matrix"),
    ("mistakes", "Most confident mistakes"),
    ("filters", "Filters of the first layer"),
    ("augmentation", "Augmentation preview"),
    ("timing", "Timing per epoch"),
    ("compute", "Compute"),
    ("environment", "Environment"),
)


@cache
def _template(name: str):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    ).get_template(name)


# --- formatting ----------------------------------------------------------------------------------------------


def _si(value: float | None, unit: str = "") -> str:
    """1.08e10 -> '10.8 G' + unit; small numbers in scientific notation."""
    if value is None:
        return NOT_RECORDED
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def format_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _number(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (bool, list, dict)):  # bool before int: True is an int
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _fraction(value: float | None) -> str:
    """An accuracy or loss to four places, "-" where there is none."""
    return f"{value:.4f}" if value is not None else "-"


def data_uri_png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _picture(record, name: str, alt: str) -> dict:
    """A run's PNG for the page: {uri, alt}, or {missing: why not}."""
    found = record.png(name)
    if isinstance(found, bytes):
        return {"uri": data_uri_png(found), "alt": alt}
    return {"uri": None, "missing": found or NOT_RECORDED}


def _problem(record, name: str) -> str:
    return f"{name}: {record.problems[name]}" if name in record.problems else NOT_RECORDED


# --- the sections of a run's page ----------------------------------------------------------------------------


def _epochs(record, of: str = "/") -> str:
    """Epochs trained of those planned; a dry run trains two batches of one epoch, whatever its --epochs says."""
    if (record.config or {}).get("dry_run"):
        return "dry run"
    return f"{record.epochs_done}{of}{record.epochs_planned}" if record.epochs_planned else str(record.epochs_done)


def _cards(record) -> list[tuple[str, str]]:
    best = record.best_val_accuracy()
    return [
        ("model", record.model_name),
        ("data", record.data_label),
        ("epochs", _epochs(record, " / ")),
        ("test accuracy", _fraction(record.test_accuracy())),
        (f"best val accuracy (epoch {best[1]})" if best else "best val accuracy", f"{best[0]:.4f}" if best else "-"),
        ("training time", format_seconds(record.seconds) if record.history else "-"),
        ("parameters", record.total_params() or "-"),
        ("state", record.status()),
    ]


def _data_notes(record) -> list[str]:
    """What the data was: from model.json and config.json, then what the data layer said (notes.txt). The
    validation line is rebuilt from the configuration only for runs older than notes.txt's own line."""
    config, model = record.config or {}, record.model or {}
    written = [line for line in (record.text("notes.txt") or "").splitlines() if line.strip()]
    notes = []
    if config.get("data"):
        notes.append(f"images from the folder {config['data']}")
    elif dataset := config.get("dataset") or model.get("dataset"):
        notes.append(f"dataset {dataset} (IDX files)")
    if classes := model.get("classes"):
        shown = ", ".join(map(str, classes[:20])) + (" ..." if len(classes) > 20 else "")
        notes.append(f"{len(classes)} classes: {shown}")
    if model.get("input_size"):
        c, h, w = model["input_size"]
        line = f"input {h}x{w}x{c}"
        if norm := model.get("input_norm"):
            mean, std = (", ".join(f"{v:.4g}" for v in norm.get(k, [])) for k in ("mean", "std"))
            line += f", normalised with mean ({mean}) and std ({std}) on the 0-1 pixel scale"
        notes.append(line)
    data = model.get("data") or {}  # model.json of every release arrives upgraded (rundir.upgrade_model_info)
    if data.get("kind") == "folder":
        notes.append(f"files: shorter side to {data.get('image_size')}, centre crop, then {data.get('crop')} crops")
    if config and not any(line.startswith("validation:") for line in written):
        notes.append(_validation_note(config))
    if config:
        augment = config.get("augment")
        notes.append("augmentation: " + (", ".join(f"{k}={v}" for k, v in augment.items()) if augment else "off"))
        if config.get("dry_run"):
            notes.append("DRY RUN: two batches of one epoch; the numbers only show that everything runs")
    return notes + written


def _validation_note(config: dict) -> str:
    if config.get("val_dir"):
        return f"validation: the folder {config['val_dir']}"
    if config.get("data"):
        return f"validation: {config.get('val_split') or 0.1:.0%} of the folder held out (stratified)"
    if config.get("val_split"):
        return f"validation: {config['val_split']:.0%} of the training set held out (stratified)"
    return "validation: the test set after each epoch, as the lesson does"


def _configuration(record) -> dict:
    model, config = record.model, record.config
    pairs = [(k, _number(v)) for k, v in sorted((config or {}).items()) if k != "model"]
    third = math.ceil(len(pairs) / 3) or 1
    return {
        "notes": _data_notes(record),
        "config_problems": [_problem(record, n) for n in ("model.json", "config.json") if n in record.problems],
        "model_pairs": [("model", model.get("model")), ("options", _number(model.get("options", {})))] if model else [],
        "config_columns": [pairs[i : i + third] for i in range(0, len(pairs), third)],
    }


def _evaluation(record) -> dict:
    report = record.report
    if report and isinstance(report.get("classification_report"), dict) and not report.get("dry_run"):
        rows = [
            (
                name,
                *(f"{scores.get(k, float('nan')):.4f}" for k in ("precision", "recall", "f1-score")),
                f"{int(scores.get('support', 0)):,}",
            )
            for name, scores in report["classification_report"].items()
            if isinstance(scores, dict)
        ]
        lines = [f"top-1 accuracy {report['accuracy']:.4f} on {report.get('n', 0):,} test images"]
        if report.get("top5") is not None:
            lines.append(f"top-5 accuracy {report['top5']:.4f}")
        if report.get("ten_crop_accuracy") is not None:
            lines.append(
                f"centre crop {report['accuracy']:.4f}, 10-crop (corners + centre, mirrored) "
                f"{report['ten_crop_accuracy']:.4f}"
            )
        return {"lines": lines, "rows": rows, "skipped": report.get("skipped_files") or []}
    if text := record.text("report.txt"):
        return {"lines": None, "text": text.rstrip()}
    if "report.json" in record.problems:
        return {"lines": None, "text": None, "missing": _problem(record, "report.json")}
    return {"lines": None, "text": None, "missing": NOT_RECORDED + " (the run has not finished its evaluation)"}


def _timing(record) -> dict:
    history = record.history
    if "metrics.csv" in record.problems or not history:
        return {"missing": _problem(record, "metrics.csv")}
    columns = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds") if k in history]
    places = {"lr": ".3g", "seconds": ".1f"}  # losses and accuracies: .4f
    seconds = history.get("seconds") or []
    longest = max(seconds, default=0) or 1
    best = record.best_val_accuracy()
    rows = []
    for i in range(record.epochs_done):
        cells = [str(i + 1)] + [format(history[k][i], places.get(k, ".4f")) for k in columns]
        bar = 100 * seconds[i] / longest if seconds else None  # a slow epoch (compilation, a busy machine) stands out
        rows.append({"cells": cells, "bar": bar, "best": bool(best and i + 1 == best[1])})
    summary = None
    if seconds:
        summary = f"{format_seconds(sum(seconds))} in all, {sum(seconds) / len(seconds):.1f}s per epoch on average"
        if len(seconds) > 1:
            summary += f" ({sum(seconds[1:]) / (len(seconds) - 1):.1f}s after the first)"
        times = record.times_to_accuracy()
        hits = [f"{100 * t:g}% after {format_seconds(hit[1])} (epoch {hit[0]})" for t, hit in times if hit]
        misses = [f"{100 * t:g}%" for t, hit in times if not hit]
        said = {"first reached": hits, "did not reach": misses}
        if parts := [f"{verb} {', '.join(targets)}" for verb, targets in said.items() if targets]:
            summary += ". Validation accuracy " + "; ".join(parts)
    header = ["epoch", *columns] + ([""] if seconds else [])  # the bars' column
    return {"missing": None, "summary": summary, "header": header, "rows": rows}


def _compute(record) -> list | str:
    compute = record.compute
    if not compute:
        return _problem(record, "compute.json")
    fraction = compute.get("fraction_of_peak")
    peak = compute.get("peak_flops_per_s")
    return [
        ("forward FLOPs per image", _si(compute.get("forward_flops_per_image"), "FLOP")),
        ("images trained on (all epochs)", _number(compute.get("train_images"))),
        ("images evaluated (all epochs)", _number(compute.get("eval_images"))),
        ("compute (3x forward per trained image, 1x per evaluated one)", _si(compute.get("train_flops"), "FLOP")),
        ("petaflop/s-days", f"{compute['pfs_days']:.3g}" if compute.get("pfs_days") is not None else NOT_RECORDED),
        ("seconds", format_seconds(compute.get("seconds"))),
        ("achieved", _si(compute.get("achieved_flops_per_s"), "FLOP/s")),
        ("device peak", _si(peak, "FLOP/s") if peak else "unknown"),
        ("fraction of peak", f"{fraction:.1%}" if fraction else "-"),
        ("device, precision", f"{compute.get('device', '?')}, {compute.get('precision', '?')}"),
    ]


ENVIRONMENT_LABELS = {
    "cnnlab": "cnnlab",
    "torch": "PyTorch",
    "numpy": "NumPy",
    "python": "Python",
    "device": "device",
    "accelerator": "accelerator",
    "cuda": "CUDA",
    "cpu": "CPU",
    "cpu_count": "CPU cores (logical)",
    "threads": "threads asked for (0: default)",
    "torch_threads": "PyTorch threads",
    "processes": "processes",
    "platform": "platform",
    "recorded": "recorded",
}


def _environment(record) -> list | str:
    env = record.environment
    if not env:
        return _problem(record, "environment.json")
    pairs = [(label, _number(env[k])) for k, label in ENVIRONMENT_LABELS.items() if env.get(k) is not None]
    return pairs + [(k, _number(v)) for k, v in env.items() if k not in ENVIRONMENT_LABELS]


def _mistakes(record) -> dict:
    report = record.report or {}
    count, wrong = None, None
    if report.get("accuracy") is not None and report.get("n") and not report.get("dry_run"):
        wrong = round(report["n"] * (1 - report["accuracy"]))
        count = f"{wrong:,} of {report['n']:,} test images misclassified"
    return {
        "count": count,
        "none": wrong == 0,
        "grid": _picture(record, "mistakes.png", "the most confident wrong predictions"),
        "cam": _picture(record, "mistakes_gradcam.png", "Grad-CAM overlays of the worst mistakes"),
    }


def _augmentation(record) -> dict:
    return {
        "off": record.config is not None and not record.config.get("augment"),
        "preview": _picture(record, "augment_preview.png", "augmented copies of a training image"),
        "comparison": _picture(record, "comparison.png", "with and without augmentation"),
    }


def render_run_page(record) -> str:
    """The page of one run, from its record (``RunDir.record()``)."""
    return _template("run.html.j2").render(
        title=f"Run {record.name}",
        subtitle=f"{record.model_name} on {record.data_label} · {record.path.resolve()}",
        cards=_cards(record),
        sections=SECTIONS,
        headings=dict(SECTIONS),
        **_configuration(record),
        summary=(record.text("summary.txt") or "").rstrip(),
        curves=_picture(record, "curves.png", "loss and accuracy per epoch"),
        evaluation=_evaluation(record),
        confusion=_picture(record, "confusion_matrix.png", "confusion matrix"),
        mistakes=_mistakes(record),
        filters=_picture(record, "filters.png", "the first convolution's kernels"),
        augmentation=_augmentation(record),
        timing=_timing(record),
        compute=_compute(record),
        environment=_environment(record),
    )


# --- several runs: the comparison page and the table of runs -------------------------------------------------


def _comparison_rows():
    """(label, the cell of a run's record) for each row of the comparison table."""

    def best(record):
        found = record.best_val_accuracy()
        return f"{found[0]:.4f} (epoch {found[1]})" if found else "-"

    def config(key):
        return lambda r: _number((r.config or {}).get(key, "-"))

    def mean_epoch(record):
        seconds = record.history.get("seconds") or []
        return f"{sum(seconds) / len(seconds):.1f}s" if seconds else "-"

    def pfs_days(record):
        value = (record.compute or {}).get("pfs_days")
        return f"{value:.3g}" if value is not None else "-"

    return [
        ("model", lambda r: r.model_name),
        ("data", lambda r: r.data_label),
        ("state", lambda r: r.status()),
        ("epochs", _epochs),
        ("final loss", lambda r: _fraction(r.final("loss"))),
        ("final accuracy", lambda r: _fraction(r.final("accuracy"))),
        ("final val_loss", lambda r: _fraction(r.final("val_loss"))),
        ("final val_accuracy", lambda r: _fraction(r.final("val_accuracy"))),
        ("best val_accuracy", best),
        ("test accuracy", lambda r: _fraction(r.test_accuracy())),
        ("10-crop accuracy", lambda r: _fraction(r.ten_crop_accuracy())),
        ("training time", lambda r: format_seconds(r.seconds) if r.history else "-"),
        ("seconds per epoch", mean_epoch),
        ("parameters", lambda r: r.total_params() or "-"),
        ("petaflop/s-days", pfs_days),
        ("batch size", config("batch_size")),
        ("optimizer", config("optimizer")),
        ("learning rate", config("lr")),
        ("schedule", config("schedule")),
        ("precision", config("precision")),
        ("augmentation", lambda r: "on" if (r.config or {}).get("augment") else "off"),
        ("seed", config("seed")),
    ]


def render_comparison_page(records) -> str:
    # Two runs of one name (runs/demo, backup/demo) go by their paths: one name would draw one run's curves only
    named = Counter(r.name for r in records)
    names = [r.name if named[r.name] == 1 else str(r.path) for r in records]
    if histories := {name: r.history for name, r in zip(names, records) if r.history}:
        buffer = io.BytesIO()
        plot_runs(histories, buffer)
        curves = {"uri": data_uri_png(buffer.getvalue()), "alt": "the runs' curves, overlaid"}
    else:
        curves = {"uri": None, "missing": "no run has recorded an epoch yet"}
    return _template("comparison.html.j2").render(
        title=f"{len(records)} runs compared",
        subtitle=", ".join(names),
        curves=curves,
        without=[name for name, r in zip(names, records) if not r.history],
        header=("", *names),
        rows=[(label, *(value(r) for r in records)) for label, value in _comparison_rows()],
        places=[(name, r.path.resolve()) for name, r in zip(names, records)],
    )


def format_runs_table(records) -> str:
    header = ("run", "model", "data", "epochs", "best val acc", "final val acc", "test acc", "time", "state")
    rows = []
    for r in records:
        best = r.best_val_accuracy()
        rows.append(
            (
                r.name,
                r.model_name,
                r.data_label,
                _epochs(r),
                f"{best[0]:.4f} (e{best[1]})" if best else "-",
                _fraction(r.final("val_accuracy")),
                _fraction(r.test_accuracy()),
                format_seconds(r.seconds) if r.history else "-",
                r.status(),
            )
        )
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
