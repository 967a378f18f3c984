"""A run directory, and the one module that knows its files: ``RunDir``.

    runs/NAME/
      .lock                one writer at a time (``RunDir.lock``): the pid of the training process
      config.json          the resolved configuration (``cnnlab train --resume`` reads it back)
      model.json           model name and options, classes, input size and normalisation, the data's
                           description (how a file becomes input), the run format's version
      environment.json     versions, CPU, device, threads
      summary.txt          the Keras-style summary
      metrics.csv          one row per epoch (Keras' CSVLogger: epochs from 0, columns sorted)
      logs/train/, logs/validation/   TensorBoard event files, when the tensorboard package is installed
      weights/last.safetensors, weights/best.safetensors   (with JSON metadata in the header)
      checkpoints/step-N/  resumable checkpoints (weights, optimizer, history; manifest with checksums)
      curves.png, compute.json
      report.txt, report.json, predictions.csv, confusion_matrix.png, mistakes.png   the test-split evaluation
      filters.png, mistakes_gradcam.png   the first layer's kernels, and where the network looked when wrong
      notes.txt, augment_preview.png (with augmentation), comparison.txt/.png (--compare-without)
      report.html          all of the above on one page (``cnnlab report RUN`` rebuilds it)
      eval-<parent>_<folder>/   ``cnnlab evaluate --data``'s report on new data
      model.onnx, model.pt2     ``cnnlab export`` (model-best.* for the best weights)

Every file cnnlab writes here goes through a temporary name, fsync and a rename: a reader (or a crash) sees the
old file or the new one, never half of one. The training callbacks (train/recorders.py) write weights and
checkpoints with the same writer (checkpoint.atomic_write_bytes); metrics.csv alone grows by a row an epoch, as
Keras' CSVLogger writes it, and a resume cuts it back to the checkpoint's rows (or writes them again from the
checkpoint's history when the file changed since).

Two ways to read: strictly (``config``, ``model_info``, ``load_model``: a resume or a prediction needs every
value right, and a damaged file is an error naming it) and tolerantly (``record``: a report or ``cnnlab runs``
shows what is there and names what is not). Both see a run written by an older release upgraded to today's
format (``upgrade_model_info``).
"""

from __future__ import annotations

import csv
import fcntl
import io
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import CheckpointError, atomic_write_bytes, load_weights_into, read_json
from .data.loader import InputNorm
from .errors import RunError, UsageError, path_argument
from .models import create_model
from .models.pattern import options_before_format_3
from .train.config import TrainConfig
from .train.recipes import accuracy_targets

# 1: model.json's "pipeline" (before the data interface); 2: "data" and "format_version"; 3: a pattern's
# padding="same" is Keras' for even kernels too (models/pattern.py's same_padding)
FORMAT_VERSION = 3
# The files a run needs, by name; export (model*.onnx, model*.pt2) is the only writer of anything else here.
OWN_FILES = (
    "config.json model.json environment.json summary.txt metrics.csv compute.json curves.png report.txt report.json "
    "predictions.csv confusion_matrix.png mistakes.png filters.png mistakes_gradcam.png notes.txt augment_preview.png "
    "comparison.txt comparison.png report.html"
).split()
OWN_FOLDERS = ("weights", "checkpoints", "logs")
WEIGHTS = ("last", "best")  # weights/last.safetensors after every epoch, best.safetensors at the best validation
MARKS_A_RUN = ("config.json", "model.json", "metrics.csv", "summary.txt", "report.json", "report.txt")
MODEL_INFO_KEYS = {"model": str, "options": dict, "classes": list, "input_size": list, "input_norm": dict, "data": dict}


def _before_format_3(info) -> bool:
    """A pattern run's model.json from before run format 3 (``options_before_format_3`` reads its options)."""
    version = info.get("format_version", 1) if isinstance(info, dict) else FORMAT_VERSION
    return isinstance(info, dict) and info.get("model") == "pattern" and (not isinstance(version, int) or version < 3)


def upgrade_model_info(info: dict) -> dict:
    """model.json of any release as today's: "pipeline" (format 1) becomes "data"; a pattern network from before
    format 3 is rebuilt as it was trained (``options_before_format_3``)."""
    info = dict(info)
    if _before_format_3(info) and isinstance(info.get("options"), dict):
        info["options"] = options_before_format_3(info["options"])
    if "data" not in info and isinstance(info.get("pipeline"), dict):
        data = {"dataset": info.get("dataset"), "input_size": info.get("input_size"), **info.pop("pipeline")}
        if data.get("kind") != "folder":
            data["kind"] = "array"
        info["data"] = data
    info["format_version"] = FORMAT_VERSION
    return info


def _model_info_problem(info: dict) -> str | None:
    """What is wrong with the values of model.json's keys (their kinds are right), or None: values that would
    fail deep in a prediction (a mean of the wrong length) or answer NaN (a std of 0) name the file instead."""
    size, norm = info["input_size"], info["input_norm"]
    if len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return f"input_size {size} is not [channels, height, width]"
    for key in ("mean", "std"):
        values = norm[key]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if len(values) != size[0] or not numbers or (key == "std" and min(values) <= 0):
            return f"input_norm {key} {values} is not {size[0]} finite number(s){' above 0' if key == 'std' else ''}"
    return "no classes" if not info["classes"] else None


def lock_holder(run_dir: Path) -> str | None:
    """The pid of a training process holding the run's lock, or None."""
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(fd)
    finally:
        os.close(fd)
    return None


def _pid_in(lock_fd: int) -> str:
    return os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "?"


def being_written(run_dir: Path, holder: str) -> RunError:  # the refusal of a run another process holds
    return RunError(f"{run_dir}: another training process (pid {holder}) is writing to this run")


class RunDir:
    """The run directory at ``path``: its files, its lock, its writes and its two ways to be read."""

    def __init__(self, path: str | Path):
        self.path = path_argument(path, "run_dir")

    def weights(self, which: str = "last") -> Path:
        """The file of the run's ``which`` weights: "last" (after the last epoch) or "best" (best validation)."""
        if which not in WEIGHTS:
            raise UsageError(f"weights is {which!r}; expected one of {', '.join(map(repr, WEIGHTS))}")
        return self.path / "weights" / f"{which}.safetensors"

    def has_settings(self) -> bool:
        return (self.path / "config.json").is_file() and (self.path / "model.json").is_file()

    def is_run(self) -> bool:
        return self.path.is_dir() and any((self.path / name).is_file() for name in MARKS_A_RUN)

    @contextmanager
    def lock(self, writer: bool = True) -> Iterator[None]:
        """One writer per run directory: an exclusive, non-blocking lock on ``RUN_DIR/.lock``, which holds the
        writer's pid. ``writer=False`` only checks that nobody writes (and keeps others out while held) without
        creating or changing a file of the run: used when looking at, or moving aside, a run that is not ours."""
        path = self.path / ".lock"
        if not writer and not path.is_file():
            yield  # no writer ever locked it
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT if writer else os.O_RDONLY, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise being_written(self.path, _pid_in(fd)) from None
            if writer:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    # --- writing: every file through a temporary name, fsync and a rename ------------------------------

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, data)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode(errors="backslashreplace"))  # a file name that is not UTF-8

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def write_png(self, name: str, plot: Callable[[io.BytesIO], object]) -> Path:
        """``plot(file)`` draws a PNG into a file (the plotting functions take a path or a file)."""
        buffer = io.BytesIO()
        plot(buffer)
        return self.write_bytes(name, buffer.getvalue())

    def write_csv(self, name: str, rows) -> Path:
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(rows)
        return self.write_text(name, buffer.getvalue())

    def write_model_info(self, info: dict) -> Path:
        return self.write_json("model.json", {**info, "format_version": FORMAT_VERSION})

    def check_output(self, output: str | Path, option: str = "-o", allow: tuple[str, ...] = ()) -> None:
        """``refuse_run_files`` for a command that reads this run: ``allow`` names files of it that it writes."""
        refuse_run_files(output, option, self.path, allow)

    def write_report(self, output: str | Path | None = None) -> Path:
        """The run's page (``RUN/report.html`` unless ``output`` says otherwise), rendered from its files."""
        from .evaluation.html_report import render_run_page

        page = render_run_page(self.record())
        if output is None:
            return self.write_text("report.html", page)
        self.check_output(output, allow=("report.html",))
        return atomic_write_bytes(output, page.encode(errors="backslashreplace"))

    # --- reading strictly: what a resume and a prediction need, every value checked ---------------------

    def require(self) -> None:
        if not self.path.is_dir():
            problem = "a file, not a run directory" if self.path.exists() else "no such run directory"
            raise RunError(f"{self.path}: {problem}")

    def config(self):
        """``config.json`` as a checked TrainConfig (a hand-edited file gets a message naming it)."""
        self.require()
        path = self.path / "config.json"
        if not path.is_file():
            raise RunError(f"{self.path}: not a run directory (no config.json)")
        try:
            saved = read_json(path)
        except CheckpointError as e:
            raise RunError(str(e)) from None
        if not isinstance(saved, dict):
            raise RunError(f"{path}: holds no configuration (one JSON object expected)")
        if _before_format_3(_tolerant_json(self.path / "model.json", {})):
            saved["model_options"] = options_before_format_3(saved.get("model_options") or {})  # as model.json's
        return TrainConfig.from_dict(saved, str(path))

    def model_info(self) -> dict:
        """``model.json`` upgraded to today's format, its keys checked."""
        self.require()
        path = self.path / "model.json"
        try:
            info = read_json(path)
        except CheckpointError as e:
            raise RunError(f"{self.path}: not a cnnlab run directory ({e})") from None
        if not isinstance(info, dict):
            raise RunError(f"{path}: damaged (one JSON object expected)")
        info = upgrade_model_info(info)
        if missing := [k for k in MODEL_INFO_KEYS if k not in info]:
            raise RunError(f"{path}: damaged or not written by cnnlab: no {', '.join(missing)}")
        wrong = [k for k, kind in MODEL_INFO_KEYS.items() if not isinstance(info[k], kind)]
        if not wrong and not all(isinstance(info["input_norm"].get(k), list) for k in ("mean", "std")):
            wrong = ["input_norm"]
        if wrong:
            raise RunError(f"{path}: damaged: {', '.join(wrong)} has the wrong kind of value")
        if problem := _model_info_problem(info):
            raise RunError(f"{path}: damaged: {problem}")
        return info

    def load_model(self, weights: str = "last"):
        """The trained model in eval mode, with its info (classes, normalisation, data)."""
        info = self.model_info()
        model = create_model(info["model"], **info["options"])
        outputs = model.cnnlab_options.get("num_classes")  # the options it was made with, defaults included
        if outputs is not None and outputs != len(info["classes"]):
            raise RunError(f"{self.path / 'model.json'}: damaged: {len(info['classes'])} classes for {outputs} outputs")
        path = self.weights(weights)
        if not path.exists():
            other = next((w for w in WEIGHTS if self.weights(w).exists()), None)
            if other is None:
                raise RunError(f"{path}: no weights yet (has the run finished an epoch?)")
            raise RunError(f"{path}: missing (the run has its {other} weights: --weights {other})")
        load_weights_into(model, path)
        model.cnnlab_input_norm = InputNorm.from_dict(info["input_norm"])
        return model.eval(), info

    def notice_unfinished(self) -> None:
        """export, predict and evaluate on a run whose weights are not those of a finished training: one line on
        stderr, then on with the work."""
        if not self.is_run():
            return  # the strict read that follows names what is wrong
        state = self.record().status()
        if state == "finished" or not any(self.weights(w).exists() for w in WEIGHTS):
            return  # with no weights, what load_model says is all there is to say
        if state == "finished (dry run)":
            why = "is a dry run (two batches of one epoch): its weights have hardly trained"
        else:
            why = f"has not finished training ({state}): these are the weights it saved last"
        print(f"cnnlab: note: {self.path} {why}", file=sys.stderr)

    # --- reading tolerantly: what a report and `cnnlab runs` show --------------------------------------

    def record(self) -> RunRecord:
        """What the run directory holds; missing files stay None, files that do not read are named."""
        self.require()
        if not self.is_run():
            raise RunError(f"{self.path}: not a cnnlab run directory (none of {', '.join(MARKS_A_RUN)})")
        record = RunRecord(self.path)
        for name in ("config", "model", "report", "compute", "environment"):
            setattr(record, name, _tolerant_json(self.path / f"{name}.json", record.problems))
        if record.model is not None:
            record.model = upgrade_model_info(record.model)
        record.history = _read_metrics(self.path / "metrics.csv", record.problems)
        return record


def refuse_run_files(output: str | Path, option: str = "-o", run: Path | None = None, allow=()) -> None:
    """Refuse an output path that would overwrite a file a run needs (its weights, checkpoints, config,
    reports; of ``run``, the run a command reads, or any other), a folder, or a file in a folder that does not
    exist; anything else (another name, an export, a file of ``run`` named in ``allow``) may be written."""
    target = Path(output).resolve()
    if target.is_dir():
        raise UsageError(f"{option} {output}: is a folder; give a file name")
    if not Path(output).parent.is_dir():  # as written: x/../s.csv needs x
        raise UsageError(f"{option} {output}: the folder {Path(output).parent} does not exist")
    here = Path(run).resolve() if run is not None else None  # the innermost run above it: this one, or another
    owner = next((p for p in target.parents if p == here or RunDir(p).has_settings()), None)
    rel = target.relative_to(owner) if owner else Path()
    top = rel.parts[0] if rel.parts else ""
    own = top in OWN_FOLDERS or top.startswith((".", "eval-")) or (len(rel.parts) == 1 and top in OWN_FILES)
    if own and (owner != here or str(rel) not in allow):
        raise UsageError(
            f"{option} {output}: is a file of the run {owner} ({rel}); writing it would destroy the run's "
            "own data. Choose another name"
        )


def first_reached(curve, target: float) -> tuple[int, float] | None:
    """(epoch, seconds) of the first (epoch, seconds until its end, accuracy) in ``curve`` that reached ``target``.
    Accuracies come as float32 (2,208 of 2,300 is stored as 0.95999998): within float32's rounding is reached."""
    return next(((epoch, seconds) for epoch, seconds, accuracy in curve if accuracy >= target - 1e-6), None)


def list_runs(folder: str | Path) -> list[RunRecord]:
    """Every run directory directly inside ``folder``, by name; unreadable ones come back with their problems.
    A run's own folder is that run (its eval-*/ folders are reports, not runs)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"{folder}: {'a file, not a' if folder.exists() else 'no such'} folder of runs")
    runs = [RunDir(folder)] if RunDir(folder).is_run() else [RunDir(p) for p in sorted(folder.iterdir())]
    return [run.record() for run in runs if run.is_run()]


def write_comparison(run_dirs, output: str | Path = "comparison.html") -> Path:
    """One page comparing several runs: their curves overlaid and their final metrics side by side."""
    from .evaluation.html_report import render_comparison_page

    runs = [RunDir(d) for d in run_dirs]
    records = [run.record() for run in runs]
    for run in runs:
        run.check_output(output)
    return atomic_write_bytes(output, render_comparison_page(records).encode(errors="backslashreplace"))


def _tolerant_json(path: Path, problems: dict) -> dict | None:
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

    def times_to_accuracy(self) -> list[tuple[float, tuple[int, float] | None]]:
        """[(target, (epoch, seconds of training and validation until then) or None)] for the accuracies its
        settings are timed to (``train.recipes.accuracy_targets``): when validation first reached each."""
        config = self.config or {}
        if config.get("dry_run"):  # two batches in file order measure no accuracy (evaluation.metrics.Report)
            return []
        elapsed = itertools.accumulate(self.history.get("seconds", []))
        curve = list(zip(itertools.count(1), elapsed, self.history.get("val_accuracy", [])))
        targets = accuracy_targets(config) if curve else ()
        return [(target, first_reached(curve, target)) for target in targets]

    def text(self, name: str) -> str | None:
        with suppress(OSError):
            return (self.path / name).read_text(errors="replace")
        return None

    def png(self, name: str) -> bytes | str | None:
        """A PNG's bytes, None when there is none, or why it could not be read."""
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return f"{name}: could not be read ({e})"
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            return f"{name}: could not be read (not a PNG file)"
        return data

    @property
    def model_name(self) -> str:
        return (self.model or {}).get("model") or (self.config or {}).get("model") or "?"

    @property
    def data_label(self) -> str:
        """'mnist', or an image folder's last two names as training named it (model.json); a format 1 run's
        model.json says "folder": then config.json's path, as written ('.' resolved here names the reader's)."""
        config, model = self.config or {}, self.model or {}
        if model.get("dataset") not in (None, "folder"):
            return model["dataset"]
        if config.get("data"):
            return "/".join(Path(config["data"]).parts[-2:])
        return config.get("dataset") or "?"

    @property
    def epochs_done(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def epochs_planned(self) -> int | None:
        return 1 if (self.config or {}).get("dry_run") else (self.config or {}).get("epochs")  # a dry run: one epoch

    @property
    def seconds(self) -> float:
        return sum(self.history.get("seconds", []))

    def best_val_accuracy(self) -> tuple[float, int] | None:
        """(best validation accuracy, its 1-based epoch)."""
        values = self.history.get("val_accuracy") or []
        best = max(values, default=None)
        return None if best is None else (best, values.index(best) + 1)

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
            value = None if self.report.get("dry_run") else self.report.get(key)  # a dry run: two batches, no accuracy
            return float(value) if value is not None else None
        found = re.search(pattern, self.text("report.txt") or "")
        return float(found.group(1)) if found else None

    def total_params(self) -> str | None:
        lines = (self.text("summary.txt") or "").splitlines()
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Total params:")), None)

    def status(self) -> str:
        """'finished', 'running (pid N)', 'unfinished (3 of 10 epochs)' or 'broken: ...'."""
        if holder := lock_holder(self.path):
            return f"running (pid {holder})"
        broken = [f"{name} {problem}" for name, problem in self.problems.items()]
        if self.config is None and "config.json" not in self.problems:
            broken.insert(0, "no config.json")
        if broken:
            return "broken: " + "; ".join(broken)
        if (self.path / "report.json").is_file() or (self.path / "report.txt").is_file():  # evaluated: finished
            return "finished (dry run)" if (self.config or {}).get("dry_run") else "finished"
        planned = f" of {self.epochs_planned}" if self.epochs_planned else ""
        return f"unfinished ({self.epochs_done}{planned} epochs)"
