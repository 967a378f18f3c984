"""Keras-style callbacks: hooks at the start and end of training, epochs and batches.

``logs`` is a plain dict, as in Keras: after an epoch it holds loss, accuracy, val_loss, val_accuracy,
lr and seconds. A callback may set ``trainer.stop_training = True`` (as Keras' ``model.stop_training``).
Batch hooks are called only when some callback overrides them, so the common case costs nothing per step.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path


class Callback:
    trainer = None  # set by fit(): gives access to .model, .history, .stop_training, .runtime

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


class CallbackList:
    def __init__(self, callbacks, trainer):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.trainer = trainer
        self.wants_batches = any(
            type(cb).on_batch_begin is not Callback.on_batch_begin or type(cb).on_batch_end is not Callback.on_batch_end
            for cb in self.callbacks
        )

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call


class EpochTimer(Callback):
    """Seconds per epoch, as the lesson prints them; added to the logs as ``seconds``.

    A checkpoint inside an epoch keeps the seconds spent on it so far (``state_dict``), so that an epoch
    resumed after a kill reports the time its steps took before and after the restart, not only after."""

    def __init__(self):
        self._start = None
        self._carried = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter() - self._carried
        self._carried = 0.0

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self._start
        self._start = None

    def state_dict(self) -> dict:
        return {"seconds": time.perf_counter() - self._start if self._start is not None else 0.0}

    def load_state_dict(self, state: dict) -> None:
        self._carried = float(state.get("seconds", 0.0))


class CSVLogger(Callback):
    """One row per epoch; appends when resuming so the file holds the whole run."""

    def __init__(self, path):
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        if not self.trainer.runtime.is_main:
            return
        row = {"epoch": epoch + 1, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        fresh = not self.path.exists() or epoch == 0
        if not fresh:
            # On resume, drop rows of epochs that are being redone.
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["epoch"]) <= epoch]
            fieldnames = list(row)
        else:
            kept, fieldnames = [], list(row)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept + [row])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto"):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.best, self.wait = None, 0

    def on_epoch_end(self, epoch, logs=None):
        value = logs.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        better = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if better:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.trainer.stop_training = True
                self.trainer.runtime.print(
                    f"early stopping: {self.monitor} has not improved for {self.patience} epochs"
                )


class ModelCheckpoint(Callback):
    """Weights of the last epoch (``last.safetensors``) and of the best by ``monitor`` (``best.safetensors``)."""

    def __init__(self, folder, monitor="val_accuracy", mode="auto", metadata=None):
        self.folder = Path(folder)
        self.monitor = monitor
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.metadata = metadata or {}
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        if not self.trainer.runtime.is_main:
            return
        from ..checkpoint import save_weights

        self.folder.mkdir(parents=True, exist_ok=True)
        model = self.trainer.model
        meta = {**self.metadata, "epoch": epoch + 1, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        save_weights(self.folder / "last.safetensors", model, meta)
        value = logs.get(self.monitor)
        if value is None:
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            save_weights(self.folder / "best.safetensors", model, meta)
