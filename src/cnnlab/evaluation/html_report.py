"""The run report page: one self-contained ``report.html`` per run directory, a comparison page for several runs,
and the table of runs that ``cnnlab runs`` prints.

The page is made to be looked at and passed around: every picture is embedded as a base64 data URI, the style is
inline, and there is no script, so it opens from a mail attachment or a file share with no network. It is built
only from the files a run leaves behind (``config.json``, ``model.json``, ``summary.txt``, ``metrics.csv``, the
PNGs, ``report.json``/``report.txt``, ``compute.json``, ``environment.json``, ``notes.txt``); any of them may be
missing (an old or unfinished run) or unreadable (a killed writer), and the page then says "not recorded" or
"could not be read" in that section instead of failing. The HTML is written by hand with ``html.escape``: a page
of tables and images needs no template engine.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunError

REPORT_FILE = "report.html"
NOT_RECORDED = "not recorded"
RUN_FILES = ("config.json", "model.json", "metrics.csv", "summary.txt", "report.json", "report.txt")


class ReportError(RunError):
    """A path given as a run directory is not one; the message names it."""


# --- the environment a run trained in ----------------------------------------------------------------------


def environment_info(device, threads: int | None = None) -> dict:
    """What a run's numbers depend on besides its configuration, for ``RUN/environment.json``: versions, the
    CPU, the device and the threads. ``threads`` is what the run asked for (0 or None: PyTorch's default);
    ``torch_threads`` is what PyTorch used."""
    import numpy as np
    import torch

    from .. import __version__

    device = torch.device(device)
    accelerator = None
    if device.type == "cuda" and torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        accelerator = "Apple MPS"
    return {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads or 0,
        "torch_threads": torch.get_num_threads(),
        "processes": int(os.environ.get("WORLD_SIZE", 1)),
        "device": str(device),
        "accelerator": accelerator,
        "cuda": torch.version.cuda,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def cpu_name() -> str:
    """The processor's model name (Linux), else what the platform says: recorded with every run and benchmark."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- reading a run directory, tolerantly ---------------------------------------------------------------------


@dataclass
class RunRecord:
    """What a run directory holds, each file read or None; ``problems`` names files that exist but did not read."""

    path: Path
    config: dict | None = None
    model: dict | None = None
    report: dict | None = None
    compute: dict | None = None
    environment: dict | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def text(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text(errors="replace")
        except OSError:
            return None

    @property
    def model_name(self) -> str:
        return (self.model or {}).get("model") or (self.config or {}).get("model") or "?"

    @property
    def data_label(self) -> str:
        """'mnist', or the last two parts of an image folder's path ('dogs-vs-cats-small/train')."""
        config = self.config or {}
        if config.get("data"):
            parts = Path(config["data"]).parts
            return "/".join(parts[-2:])
        return config.get("dataset") or (self.model or {}).get("dataset") or "?"

    @property
    def epochs_done(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def epochs_planned(self) -> int | None:
        return (self.config or {}).get("epochs")

    @property
    def seconds(self) -> float:
        return sum(self.history.get("seconds", []))

    @property
    def finished(self) -> bool:
        return (self.path / "report.json").is_file() or (self.path / "report.txt").is_file()

    def best_val_accuracy(self) -> tuple[float, int] | None:
        """(best validation accuracy, its 1-based epoch)."""
        values = self.history.get("val_accuracy") or []
        if not values:
            return None
        best = max(range(len(values)), key=values.__getitem__)
        return values[best], best + 1

    def final(self, key: str) -> float | None:
        values = self.history.get(key) or []
        return values[-1] if values else None

    def test_accuracy(self) -> float | None:
        """From report.json, or the line that ``Report.format`` ends report.txt with (older runs have only that)."""
        return self._report_value("accuracy", r"(?:top-1 accuracy|accuracy, centre crop): ([0-9.]+)")

    def ten_crop_accuracy(self) -> float | None:
        return self._report_value("ten_crop_accuracy", r"10-crop \(corners \+ centre, mirrored\): ([0-9.]+)")

    def _report_value(self, key: str, pattern: str) -> float | None:
        if self.report is not None:
            value = self.report.get(key)
            return float(value) if value is not None else None
        found = re.search(pattern, self.text("report.txt") or "")
        return float(found.group(1)) if found else None

    def total_params(self) -> str | None:
        for line in (self.text("summary.txt") or "").splitlines():
            if line.startswith("Total params:"):
                return line.split(":", 1)[1].strip()
        return None

    def status(self) -> str:
        """'finished', 'running (pid N)', 'unfinished (3 of 10 epochs)' or 'broken: ...'."""
        holder = _lock_holder(self.path / ".lock")
        if holder:
            return f"running (pid {holder})"
        broken = [f"{name} {problem}" for name, problem in self.problems.items()]
        if self.config is None and "config.json" not in self.problems:
            broken.insert(0, "no config.json")
        if broken:
            return "broken: " + "; ".join(broken)
        if self.finished:
            return "finished (dry run)" if (self.config or {}).get("dry_run") else "finished"
        planned = f" of {self.epochs_planned}" if self.epochs_planned else ""
        return f"unfinished ({self.epochs_done}{planned} epochs)"


def _lock_holder(path: Path) -> str | None:
    """The pid of a training process holding the run's lock (see ``RunLock``), or None."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)
    return None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a run directory; files that are missing stay None, files that do not read are named in ``problems``."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run directory")
    if not is_run_dir(path):
        raise ReportError(f"{path}: not a cnnlab run directory (none of {', '.join(RUN_FILES)})")
    record = RunRecord(path)
    for attribute, name in (
        ("config", "config.json"),
        ("model", "model.json"),
        ("report", "report.json"),
        ("compute", "compute.json"),
        ("environment", "environment.json"),
    ):
        setattr(record, attribute, _read_json(path / name, record.problems))
    record.history = _read_metrics(path / "metrics.csv", record.problems)
    return record


def _read_json(path: Path, problems: dict) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems[path.name] = f"could not be read ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
        return None
    if not isinstance(value, dict):
        problems[path.name] = "could not be read (not a JSON object)"
        return None
    return value


def _read_metrics(path: Path, problems: dict) -> dict[str, list[float]]:
    """metrics.csv as {column: [value per epoch]}; a half-written last row (a killed run) is left out."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems[path.name] = f"could not be read ({e})"
        return {}
    history: dict[str, list[float]] = {}
    for row in rows:
        try:
            values = {key: float(value) for key, value in row.items() if key and key != "epoch"}
        except (TypeError, ValueError):
            continue
        for key, value in values.items():
            history.setdefault(key, []).append(value)
    return history


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
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _missing(what: str = NOT_RECORDED) -> str:
    return f'<p class="missing">{_e(what)}</p>'


def _problem(record: RunRecord, name: str) -> str:
    return _missing(f"{name}: {record.problems[name]}") if name in record.problems else _missing()


def _table(rows, header=None, cls: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _key_values(pairs) -> str:
    return _table([(f"<b>{_e(k)}</b>", _e(v)) for k, v in pairs], cls="kv")


def data_uri_png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _png(record: RunRecord, name: str, alt: str) -> str:
    """The run's PNG embedded as a data URI, or why it is not there."""
    try:
        data = (record.path / name).read_bytes()
    except FileNotFoundError:
        return _missing()
    except OSError as e:
        return _missing(f"{name}: could not be read ({e})")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _missing(f"{name}: could not be read (not a PNG file)")
    return f'<img src="{data_uri_png(data)}" alt="{_e(alt)}">'


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; background: #f3f5f8;
       margin: 0; padding: 24px; }
main { max-width: 1240px; margin: 0 auto; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 10px; border-bottom: 1px solid #dde3ea; padding-bottom: 4px; }
.sub { color: #5a6577; margin: 0 0 14px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 14px 18px; margin: 0 0 16px; }
nav { margin: 0 0 16px; font-size: 13px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a { color: #2457a5; text-decoration: none; white-space: nowrap; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; margin: 0 0 16px; }
.card { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 8px 12px; }
.card b { display: block; font-size: 18px; overflow-wrap: anywhere; }
.card span { color: #5a6577; font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 16px; align-items: start; }
img { max-width: 100%; height: auto; display: block; }
pre { background: #f7f9fb; border: 1px solid #e4e8ee; border-radius: 6px; padding: 10px; overflow-x: auto;
      font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; margin: 0 0 8px; }
table { border-collapse: collapse; font-size: 13px; margin: 0 0 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e8ecf1; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
table.kv td { text-align: left; }
table.kv td:first-child { color: #5a6577; white-space: nowrap; }
tr.best td { background: #eaf6ea; font-weight: 600; }
td.bar { width: 260px; text-align: left; }
td.bar div { background: #7aa6da; height: 10px; border-radius: 2px; }
.missing { color: #9a5b00; font-style: italic; margin: 4px 0; }
.note { color: #5a6577; font-size: 12px; }
ul.notes { margin: 4px 0 8px; padding-left: 18px; }
"""


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n"
        f'<body><main><h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p>\n{body}\n'
        '<p class="note">written by cnnlab: one file, images embedded, no network, no script.</p>'
        "</main></body></html>\n"
    )


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{content}\n</section>\n'


# --- the sections of a run's page ----------------------------------------------------------------------------

SECTIONS = (  # (anchor, heading): the page's order
    ("configuration", "Configuration and data"),
    ("summary", "Model summary"),
    ("curves", "Training curves"),
    ("evaluation", "Classification report"),
    ("confusion", "Confusion matrix"),
    ("mistakes", "Most confident mistakes"),
    ("augmentation", "Augmentation preview"),
    ("timing", "Timing per epoch"),
    ("compute", "Compute"),
    ("environment", "Environment"),
)


def _cards(record: RunRecord) -> str:
    best = record.best_val_accuracy()
    cards = [
        ("model", record.model_name),
        ("data", record.data_label),
        ("epochs", f"{record.epochs_done}" + (f" / {record.epochs_planned}" if record.epochs_planned else "")),
        ("test accuracy", f"{record.test_accuracy():.4f}" if record.test_accuracy() is not None else "-"),
        (f"best val accuracy (epoch {best[1]})" if best else "best val accuracy", f"{best[0]:.4f}" if best else "-"),
        ("training time", format_seconds(record.seconds) if record.history else "-"),
        ("parameters", record.total_params() or "-"),
        ("state", record.status()),
    ]
    return (
        '<div class="cards">'
        + "".join(f"<div class=card><span>{_e(k)}</span><b>{_e(v)}</b></div>" for k, v in cards)
        + "</div>"
    )


def _data_notes(record: RunRecord) -> list[str]:
    """What the data was, read back from model.json and config.json (and notes.txt when the run wrote one)."""
    config, model = record.config or {}, record.model or {}
    notes = []
    if config.get("data"):
        notes.append(f"images from the folder {config['data']}")
    elif config.get("dataset") or model.get("dataset"):
        notes.append(f"dataset {config.get('dataset') or model.get('dataset')} (IDX files)")
    classes = model.get("classes")
    if classes:
        shown = ", ".join(map(str, classes[:20])) + (" ..." if len(classes) > 20 else "")
        notes.append(f"{len(classes)} classes: {shown}")
    if model.get("input_size"):
        c, h, w = model["input_size"]
        line = f"input {h}x{w}x{c}"
        norm = model.get("input_norm") or {}
        if norm:
            mean, std = (", ".join(f"{v:.4g}" for v in norm.get(k, [])) for k in ("mean", "std"))
            line += f", normalised with mean ({mean}) and std ({std}) on the 0-1 pixel scale"
        notes.append(line)
    pipeline = model.get("pipeline") or {}
    if pipeline.get("kind") == "folder":
        notes.append(
            f"files: shorter side to {pipeline.get('image_size')}, centre crop, then {pipeline.get('crop')} crops"
        )
    if config:
        if config.get("val_dir"):
            notes.append(f"validation: the folder {config['val_dir']}")
        elif config.get("data"):
            notes.append(f"validation: {config.get('val_split') or 0.1:.0%} of the folder held out (stratified)")
        elif config.get("val_split"):
            notes.append(f"validation: {config['val_split']:.0%} of the training set held out (stratified)")
        else:
            notes.append("validation: the test set after each epoch, as the lesson does")
        augment = config.get("augment")
        notes.append("augmentation: " + (", ".join(f"{k}={v}" for k, v in augment.items()) if augment else "off"))
        if config.get("dry_run"):
            notes.append("DRY RUN: two batches of one epoch; the numbers only show that everything runs")
    written = record.text("notes.txt")
    if written:
        notes.extend(line for line in written.splitlines() if line.strip())
    return notes


def _configuration(record: RunRecord) -> str:
    parts = []
    notes = _data_notes(record)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    for name in ("model.json", "config.json"):
        if name in record.problems:
            parts.append(_problem(record, name))
    model = record.model
    if model:
        pairs = [("model", model.get("model")), ("options", _number(model.get("options", {})))]
        parts.append(_key_values(pairs))
    config = record.config
    if config:
        pairs = [(k, _number(v)) for k, v in sorted(config.items()) if k not in ("model",)]
        third = math.ceil(len(pairs) / 3)
        parts.append(
            '<div class="grid">'
            + "".join(_key_values(pairs[i : i + third]) for i in range(0, len(pairs), third))
            + "</div>"
        )
    if not (config or model):
        parts.append(_missing("config.json and model.json: " + NOT_RECORDED))
    return "".join(parts)


def _summary(record: RunRecord) -> str:
    text = record.text("summary.txt")
    return f"<pre>{_e(text.rstrip())}</pre>" if text else _missing()


def _evaluation(record: RunRecord) -> str:
    report = record.report
    text = record.text("report.txt")
    if report and isinstance(report.get("classification_report"), dict):
        rows = []
        for name, scores in report["classification_report"].items():
            if isinstance(scores, dict):
                rows.append(
                    (
                        _e(name),
                        *(f"{scores.get(k, float('nan')):.4f}" for k in ("precision", "recall", "f1-score")),
                        f"{int(scores.get('support', 0)):,}",
                    )
                )
        lines = [f"top-1 accuracy {report['accuracy']:.4f} on {report.get('n', 0):,} test images"]
        if report.get("top5") is not None:
            lines.append(f"top-5 accuracy {report['top5']:.4f}")
        if report.get("ten_crop_accuracy") is not None:
            lines.append(
                f"centre crop {report['accuracy']:.4f}, 10-crop (corners + centre, mirrored) "
                f"{report['ten_crop_accuracy']:.4f}"
            )
        html_out = "<p><b>" + _e(" · ".join(lines)) + "</b></p>"
        html_out += _table(rows, ("class", "precision", "recall", "f1-score", "support"))
        skipped = report.get("skipped_files") or []
        if skipped:
            html_out += f"<p class=missing>skipped {len(skipped)} unreadable file(s): {_e('; '.join(skipped))}</p>"
        return html_out
    if text:
        return f"<pre>{_e(text.rstrip())}</pre>"
    if "report.json" in record.problems:
        return _problem(record, "report.json")
    return _missing(NOT_RECORDED + " (the run has not finished its evaluation)")


def _timing(record: RunRecord) -> str:
    history = record.history
    if "metrics.csv" in record.problems:
        return _problem(record, "metrics.csv")
    if not history:
        return _missing()
    columns = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr") if k in history]
    seconds = history.get("seconds") or []
    longest = max(seconds, default=0) or 1
    best = record.best_val_accuracy()
    header = ["epoch", *columns] + (["seconds", ""] if seconds else [])
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for i in range(record.epochs_done):
        cells = [str(i + 1)] + [f"{history[k][i]:.3g}" if k == "lr" else f"{history[k][i]:.4f}" for k in columns]
        cells = [f"<td>{c}</td>" for c in cells]
        if seconds:  # a bar per epoch: a slow epoch (compilation, a busy machine) stands out
            width = 100 * seconds[i] / longest
            cells += [f"<td>{seconds[i]:.1f}</td>", f'<td class="bar"><div style="width:{width:.1f}%"></div></td>']
        highlight = ' class="best"' if best and i + 1 == best[1] else ""
        rows.append(f"<tr{highlight}>" + "".join(cells) + "</tr>")
    out = "<table>" + "".join(rows) + "</table>"
    if seconds:
        summary = f"{format_seconds(sum(seconds))} in all, {sum(seconds) / len(seconds):.1f}s per epoch on average"
        if len(seconds) > 1:
            summary += f" ({sum(seconds[1:]) / (len(seconds) - 1):.1f}s after the first)"
        out = f"<p>{_e(summary)}</p>" + out
    return out + '<p class="note">highlighted: the best validation accuracy; seconds: training and validation</p>'


def _compute(record: RunRecord) -> str:
    compute = record.compute
    if not compute:
        return _problem(record, "compute.json")
    fraction = compute.get("fraction_of_peak")
    pairs = [
        ("forward FLOPs per image", _si(compute.get("forward_flops_per_image"), "FLOP")),
        ("images trained on (all epochs)", _number(compute.get("train_images"))),
        ("images evaluated (all epochs)", _number(compute.get("eval_images"))),
        ("training compute (3x forward per trained image)", _si(compute.get("train_flops"), "FLOP")),
        ("petaflop/s-days", f"{compute['pfs_days']:.3g}" if compute.get("pfs_days") is not None else NOT_RECORDED),
        ("seconds", format_seconds(compute.get("seconds"))),
        ("achieved", _si(compute.get("achieved_flops_per_s"), "FLOP/s")),
        (
            "device peak",
            _si(compute.get("peak_flops_per_s"), "FLOP/s") if compute.get("peak_flops_per_s") else "unknown",
        ),
        ("fraction of peak", f"{fraction:.1%}" if fraction else "-"),
        ("device, precision", f"{compute.get('device', '?')}, {compute.get('precision', '?')}"),
    ]
    return _key_values(pairs)


def _environment(record: RunRecord) -> str:
    env = record.environment
    if not env:
        return _problem(record, "environment.json")
    labels = {
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
    pairs = [(labels[k], _number(env[k])) for k in labels if env.get(k) is not None]
    pairs += [(k, _number(v)) for k, v in env.items() if k not in labels]
    return _key_values(pairs)


def _mistakes(record: RunRecord) -> str:
    picture = _png(record, "mistakes.png", "the most confident wrong predictions")
    report = record.report or {}
    if report.get("accuracy") is None or not report.get("n"):
        return picture
    wrong = round(report["n"] * (1 - report["accuracy"]))
    return f"<p>{wrong:,} of {report['n']:,} test images misclassified; the most confident of them:</p>" + picture


def _augmentation(record: RunRecord) -> str:
    augment = (record.config or {}).get("augment")
    if record.config is not None and not augment:
        return _missing("augmentation was off for this run")
    preview = _png(record, "augment_preview.png", "augmented copies of a training image")
    comparison = _png(record, "comparison.png", "with and without augmentation")
    if (record.path / "comparison.png").is_file():
        return f'<div class="grid"><div>{preview}</div><div>{comparison}</div></div>'
    return preview


def render_run_page(record: RunRecord) -> str:
    content = {
        "configuration": _configuration(record),
        "summary": _summary(record),
        "curves": _png(record, "curves.png", "loss and accuracy per epoch"),
        "evaluation": _evaluation(record),
        "confusion": _png(record, "confusion_matrix.png", "confusion matrix"),
        "mistakes": _mistakes(record),
        "augmentation": _augmentation(record),
        "timing": _timing(record),
        "compute": _compute(record),
        "environment": _environment(record),
    }
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in SECTIONS) + "</nav>"
    sections = {a: _section(a, t, content[a]) for a, t in SECTIONS}
    # The evaluation table and the confusion matrix side by side; the rest one under the other.
    body = (
        _cards(record)
        + nav
        + sections["configuration"]
        + sections["summary"]
        + sections["curves"]
        + '<div class="grid">'
        + sections["evaluation"]
        + sections["confusion"]
        + "</div>"
        + "".join(sections[a] for a in ("mistakes", "augmentation", "timing"))
        + '<div class="grid">'
        + sections["compute"]
        + sections["environment"]
        + "</div>"
    )
    subtitle = f"{record.model_name} on {record.data_label} · {record.path.resolve()}"
    return _page(f"Run {record.name}", subtitle, body)


def build_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the run's page (``RUN/report.html`` unless ``path`` says otherwise) from its files; returns its path."""
    record = load_run(run_dir)
    out = Path(path) if path else record.path / REPORT_FILE
    _atomic_write_text(out, render_run_page(record))
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- several runs: the comparison page and the table of runs -------------------------------------------------


def _comparison_rows(records: list[RunRecord]):
    def acc(value):
        return f"{value:.4f}" if value is not None else "-"

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
        ("epochs", lambda r: str(r.epochs_done)),
        ("final loss", lambda r: acc(r.final("loss"))),
        ("final accuracy", lambda r: acc(r.final("accuracy"))),
        ("final val_loss", lambda r: acc(r.final("val_loss"))),
        ("final val_accuracy", lambda r: acc(r.final("val_accuracy"))),
        ("best val_accuracy", best),
        ("test accuracy", lambda r: acc(r.test_accuracy())),
        ("10-crop accuracy", lambda r: acc(r.ten_crop_accuracy())),
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


def render_comparison_page(records: list[RunRecord]) -> str:
    from .plots import plot_runs

    histories = {r.name: r.history for r in records if r.history}
    if histories:
        buffer = io.BytesIO()
        plot_runs(histories, buffer)
        curves = f'<img src="{data_uri_png(buffer.getvalue())}" alt="the runs\' curves, overlaid">'
    else:
        curves = _missing("no run has recorded an epoch yet")
    without = [r.name for r in records if not r.history]
    if without:
        curves += _missing("no epochs recorded: " + ", ".join(without))
    rows = [(_e(label), *(_e(value(r)) for r in records)) for label, value in _comparison_rows(records)]
    table = _table(rows, ("", *(r.name for r in records)))
    where = '<ul class="notes">' + "".join(f"<li>{_e(r.name)}: {_e(r.path.resolve())}</li>" for r in records) + "</ul>"
    body = (
        _section("curves", "Curves, overlaid", curves)
        + _section("final", "Final metrics, side by side", '<div style="overflow-x:auto">' + table + "</div>")
        + _section("runs", "Run directories", where)
    )
    return _page(f"{len(records)} runs compared", ", ".join(r.name for r in records), body)


def build_comparison(run_dirs, path: str | Path = "comparison.html") -> Path:
    """One page comparing several runs: their curves overlaid and their final metrics side by side."""
    records = [load_run(d) for d in run_dirs]
    out = Path(path)
    _atomic_write_text(out, render_comparison_page(records))
    return out


def list_runs(folder: str | Path) -> list[RunRecord]:
    """Every run directory directly inside ``folder``, by name; unreadable ones come back with their problems."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder of runs")
    return [load_run(p) for p in sorted(folder.iterdir()) if is_run_dir(p)]


def format_runs_table(records: list[RunRecord]) -> str:
    header = ("run", "model", "data", "epochs", "best val acc", "final val acc", "test acc", "time", "state")
    rows = []
    for r in records:
        best = r.best_val_accuracy()
        final = r.final("val_accuracy")
        test = r.test_accuracy()
        rows.append(
            (
                r.name,
                r.model_name,
                r.data_label,
                f"{r.epochs_done}/{r.epochs_planned}" if r.epochs_planned else str(r.epochs_done),
                f"{best[0]:.4f} (e{best[1]})" if best else "-",
                f"{final:.4f}" if final is not None else "-",
                f"{test:.4f}" if test is not None else "-",
                format_seconds(r.seconds) if r.history else "-",
                r.status(),
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
