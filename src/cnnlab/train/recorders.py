"""The callbacks that write files, with Keras' names, defaults and meanings (see callbacks.py for what every
callback sees): ``ModelCheckpoint`` (weights), ``CSVLogger`` (metrics.csv), ``TensorBoard`` (event files), and
the set of them behind a run directory. Each keeps its state across a resume, so that a resumed run's files
hold every epoch exactly once.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import operator
import warnings
from pathlib import Path

import numpy as np

from ..checkpoint import save_weights
from ..errors import UsageError
from .callbacks import Callback, _checked_mode, _improvement_op, _numeric


class ModelCheckpoint(Callback):
    """Save the weights after every epoch, or only the best (keras/src/callbacks/model_checkpoint.py).

    ``filepath`` may hold Python format fields filled from ``epoch`` (counted from 1, as Keras does) and the
    logs: ``"weights/{epoch:02d}-{val_loss:.2f}.safetensors"``. Files are safetensors, never pickles:
    ``save_weights_only=True`` writes the weights (and the epoch's logs in the header);
    ``save_weights_only=False`` (Keras' "whole model") adds what rebuilds the model, as a run's ``model.json``
    holds it: the registry name, its options and the input normalisation. ``m = create_model(meta["model"],
    **meta["options"])``, ``load_weights_into(m, path)`` and ``m.cnnlab_input_norm = InputNorm.from_dict(
    meta["input_norm"])`` give it back, as ``load_run`` does (an older release's file after
    ``rundir.upgrade_model_info(meta)``). The model given to ``fit`` keeps its normalisation: weights loaded
    back into it predict as when they were saved.
    ``save_best_only`` saves when ``monitor`` improved on the best so far (which ``initial_value_threshold``
    can set); ``save_freq`` is ``"epoch"`` or a number of batches. ``metadata`` (a cnnlab addition) goes
    into every file's header. Only rank 0 writes. Its best value is saved in checkpoints.
    """

    _kept = {
        "best": "best",
        "batches_seen_since_last_saving": "_batches_seen_since_last_saving",
        "last_batch_seen": "_last_batch_seen",
    }

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
        initial_value_threshold=None,
        metadata=None,
    ):
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _checked_mode(mode, "ModelCheckpoint")
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self.metadata = dict(metadata or {})
        self.monitor_op = None
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = 0
        self._current_epoch = 0
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise UsageError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values")
        if not self.filepath.endswith(".safetensors"):
            raise UsageError(
                f"ModelCheckpoint: the filepath must end in .safetensors (cnnlab saves weights only as safetensors, "
                f"which cannot run code when loaded). Received: filepath={self.filepath}"
            )

    def on_train_begin(self, logs=None):
        if not self.save_weights_only and getattr(self.model, "cnnlab_name", None) is None:
            raise UsageError(
                "ModelCheckpoint(save_weights_only=False) records how to rebuild the model, which only models "
                "made by cnnlab.create_model carry; use save_weights_only=True for other modules"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def needs(self, *hooks: str) -> bool:
        if type(self).on_train_batch_end is not ModelCheckpoint.on_train_batch_end:
            return super().needs(*hooks)  # a subclass's own batch hook
        return self.save_freq != "epoch" and super().needs(*hooks)  # saving per epoch: no batch hooks

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Keras' _should_save_on_batch: a batch number that does not grow means a new epoch.
        added = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        if self.monitor_op is None:
            self.monitor_op = _improvement_op(self.monitor, self.mode, "ModelCheckpoint")
            if self.best is None:
                self.best = math.inf if self.monitor_op is operator.lt else -math.inf
        counted = {"epoch": epoch + 1} if batch is None else {"epoch": epoch + 1, "batch": batch + 1}
        try:
            path = Path(self.filepath.format(**{**counted, **logs}))
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {e}') from None
        if not self._should_save(epoch, logs, path) or not self.trainer.runtime.is_main:
            return
        meta = {}
        if not self.save_weights_only:  # what rebuilds a registry model, as its run's model.json
            norm = self.model.cnnlab_input_norm.to_dict()
            meta = dict(model=self.model.cnnlab_name, options=self.model.cnnlab_options, input_norm=norm)
        meta.update({**self.metadata, **counted, **_numeric(logs)})
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, self.model, meta)

    def _should_save(self, epoch: int, logs: dict, path: Path) -> bool:
        if not self.save_best_only:
            self._say(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        if self.monitor_op(current, self.best):
            self._say(
                f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                f"saving model to {path}"
            )
            self.best = current
            return True
        self._say(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
        return False


class CSVLogger(Callback):
    """One row per epoch (keras/src/callbacks/csv_logger.py): ``epoch`` (counted from 0, as Keras writes it)
    then the logs' keys in sorted order (with ``val_`` columns added when there are none, as Keras does).
    ``append=False`` starts the file afresh when training starts, ``append=True`` adds to it (a header only
    if the file is empty). Its state is the file's length after the last row written: a resumed run cuts the
    file back to the checkpoint's rows and goes on, so the file holds every epoch exactly once.
    """

    def __init__(self, filename, separator=",", append=False):
        self.filename = Path(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self._size = None  # bytes of the file after the last row this run wrote
        self._cut_to = None  # before the next row: cut the file to this length (0: start afresh)

    def on_train_begin(self, logs=None):
        self.keys = None
        self._cut_to = None if self.append else 0

    def on_epoch_end(self, epoch, logs=None):
        if not self.trainer.runtime.is_main:
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        with open(self.filename, "a+", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *self.keys], delimiter=self.sep)
            if self._cut_to is not None:
                f.seek(0)
                kept = f.read(self._cut_to)
                intact = len(kept) == self._cut_to and kept.startswith(self._header() if self._cut_to else "")
                f.truncate(self._cut_to if intact else 0)  # cutting a shorter file "back" would pad it with NULs
                if not intact:  # changed since the checkpoint: its rows again, from the history the checkpoint kept
                    self._write_history(writer)
                self._cut_to = None
            f.seek(0, 2)
            if f.tell() == 0:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **{k: _csv_value(logs.get(k, "NA")) for k in self.keys}})
            f.flush()
            self._size = f.tell()

    def _write_history(self, writer: csv.DictWriter) -> None:
        writer.writeheader()
        past = self.trainer.history
        for i, done in enumerate(past.epoch):
            row = {k: _csv_value(past.history[k][i]) if k in past.history else "NA" for k in self.keys}
            writer.writerow({"epoch": done, **row})

    def _header(self) -> str:
        out = io.StringIO()
        csv.DictWriter(out, fieldnames=["epoch", *self.keys], delimiter=self.sep).writeheader()
        return out.getvalue()

    def state_dict(self) -> dict:
        return {"size": self._size, "keys": self.keys}

    def load_state_dict(self, state: dict) -> None:
        self.keys = state["keys"]
        if state["size"] is not None:
            self._size = self._cut_to = state["size"]


def _csv_value(v):
    if not isinstance(v, (list, tuple, np.ndarray)):
        return v
    return f'"[{", ".join(map(str, v))}]"'


class TensorBoard(Callback):
    """Epoch scalars for TensorBoard in Keras' layout (keras/src/callbacks/tensorboard.py):
    ``log_dir/train/`` and ``log_dir/validation/`` event files holding ``epoch_loss``, ``epoch_accuracy``,
    ``epoch_learning_rate`` (and ``epoch_seconds``) at step = epoch (from 0); the validation file holds the
    ``val_`` metrics under the same tags, so TensorBoard draws train and validation on one chart. Written
    with PyTorch's ``SummaryWriter`` (the ``tensorboard`` package: ``pip install cnnlab[tensorboard]``), by
    rank 0 only. A resumed run starts its writers with ``purge_step`` = the first epoch it redoes, so
    TensorBoard hides the epochs that the killed run logged after its checkpoint.
    """

    def __init__(self, log_dir="logs"):
        if not tensorboard_available():
            raise ImportError(
                "the TensorBoard callback needs the tensorboard package: pip install 'cnnlab[tensorboard]' "
                "(or pip install tensorboard)"
            )
        self.log_dir = Path(log_dir)
        self._writers: dict = {}
        self._next_epoch = 0
        self._purge_step = None

    def on_train_begin(self, logs=None):
        # From step 0 a start discards what a killed first attempt left in log_dir (a restart with no checkpoint
        # yet); a resume sets the step it continues from (load_state_dict).
        self._writers, self._purge_step = {}, 0

    def _writer(self, name: str):
        if name not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[name] = SummaryWriter(str(self.log_dir / name), purge_step=self._purge_step)
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        self._next_epoch = epoch + 1
        if not self.trainer.runtime.is_main:
            return
        scalars = _numeric(logs or {})
        train = {("learning_rate" if k == "lr" else k): v for k, v in scalars.items() if not k.startswith("val_")}
        val = {k.removeprefix("val_"): v for k, v in scalars.items() if k.startswith("val_")}
        for name, values in (("train", train), ("validation", val)):
            if values:
                writer = self._writer(name)
                for k, v in values.items():
                    writer.add_scalar("epoch_" + k, v, global_step=epoch)
                writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def state_dict(self) -> dict:
        return {"next_epoch": self._next_epoch}

    def load_state_dict(self, state: dict) -> None:
        self._next_epoch = self._purge_step = state["next_epoch"]


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def run_directory_callbacks(run_dir, metadata: dict) -> list[Callback]:
    """The callbacks behind a run directory: ``metrics.csv``, ``weights/last.safetensors`` (every epoch),
    ``weights/best.safetensors`` (the best ``val_accuracy``: a run directory keeps the most accurate
    weights, while the public ``ModelCheckpoint`` defaults to Keras' ``val_loss``), and TensorBoard logs in
    ``logs/`` (Keras' examples' folder name) when the tensorboard package is installed. (``--early-stopping``
    is fit's, from the settings.)"""
    run_dir = Path(run_dir)
    weights = str(run_dir / "weights").replace("{", "{{").replace("}", "}}")  # a path, not a format
    callbacks: list[Callback] = [
        CSVLogger(run_dir / "metrics.csv"),
        ModelCheckpoint(weights + "/last.safetensors", metadata=metadata),
        ModelCheckpoint(weights + "/best.safetensors", monitor="val_accuracy", save_best_only=True, metadata=metadata),
    ]
    if tensorboard_available():
        callbacks.append(TensorBoard(run_dir / "logs"))
    return callbacks
