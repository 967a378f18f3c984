"""The state of a training run: what callbacks see as ``self.trainer``, and what a checkpoint keeps
(``state_dict`` / ``load_state_dict`` are the whole of one). A checkpoint carries ``version``; ``upgrade``
reads every earlier one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError, list_checkpoints, save_checkpoint
from ..errors import TrainingError

VERSION = 2  # 1 (until 2026-12, no "version" key): no skipped-step count in the epoch's partial metrics


class CheckpointWriteError(TrainingError):
    """A checkpoint could not be written (a full disk, say); the message says what is still intact."""


class History:
    """Per-epoch metrics, as Keras' ``History``: ``history.history["val_accuracy"][-1]``; ``params`` and ``model``
    as fit left them."""

    def __init__(self, history: dict | None = None):
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}
        self.params: dict = {}
        self.model = None

    @property
    def epoch(self) -> list[int]:
        return list(range(len(next(iter(self.history.values()), []))))

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]


def upgrade(state: dict) -> dict:
    """A checkpoint's training state in today's layout, whichever release wrote it."""
    version = state.get("version", 1)
    if version > VERSION:
        raise CheckpointError(f"checkpoint version {version} is of a newer cnnlab (this one reads up to {VERSION})")
    if version == 1:  # older v1 checkpoints also lack data, trainer, or kept callbacks as None
        partial = state.get("partial")
        state = {"data": None, "trainer": None, "scaler": None, "ema": None, **state, "version": VERSION}
        state["callbacks"] = state.get("callbacks") or []
        state["partial"] = [*partial, 0.0] if partial is not None else None
    return state


class TrainState:
    """The loop's state. Callbacks use ``.optimizer``, ``.history``, ``.runtime``, ``.step`` and the learning rate
    rule (see cnnlab.train.callbacks): the rate of a step is ``(lr_override if set else schedule(step)) * lr_scale``."""

    def __init__(self, model, optimizer, runtime, schedule, initial_learning_rate: float, scaler=None, ema=None):
        self.model, self.optimizer, self.runtime, self.scaler, self.ema = model, optimizer, runtime, scaler, ema
        self.schedule = schedule  # step -> fit's own learning rate
        self.initial_learning_rate = initial_learning_rate  # TrainConfig.lr, Keras' initial rate
        self.lr_override: float | None = None
        self.lr_scale = 1.0
        self.history = History()
        self.callbacks = None  # a CallbackList, set by fit once the callbacks know this state
        self.epoch = 0  # the epoch being run (or next to run)
        self.step_in_epoch = 0  # steps of it done
        self.step = 0  # the global step being run (or about to run)
        self.partial: list[float] | None = None  # a resumed epoch's metric sums before the restart (rank 0)
        self.data: dict = {}  # what the run trains on (images, steps an epoch): a resume must find the same
        self._callback_states: list = []
        model.stop_training = False  # Keras' Model.stop_training: callbacks set it to stop after the batch

    # --- the learning rate and stopping, as callbacks see them ------------------------------------------------
    @property
    def stop_training(self) -> bool:
        return self.model.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.model.stop_training = value

    @property
    def learning_rate(self) -> float:
        """The rate of the current step (at an epoch's end: its last step, as Keras' optimizer reports it)."""
        base = self.lr_override if self.lr_override is not None else self.schedule(self.step)
        return base * self.lr_scale

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        """Keras' ``optimizer.learning_rate = value``: every later step uses ``value``, not the schedule."""
        self.lr_override, self.lr_scale = float(value), 1.0

    def scale_learning_rate(self, factor: float) -> None:
        """Every later step uses ``factor`` times the rate it would have had."""
        self.lr_scale *= factor

    # --- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "version": VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None and self.scaler.is_enabled() else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "callbacks": self.callbacks.state_dicts(),
            "history": self.history.history,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "partial": self.partial,
            "data": self.data,
            "trainer": dict(lr_override=self.lr_override, lr_scale=self.lr_scale, stop_training=self.stop_training),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s output (of any release: see ``upgrade``). The callbacks' states are
        loaded by ``begin``, after ``on_train_begin`` (which resets a callback, as in Keras)."""
        state = upgrade(state)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:  # fit(model, run_dir=..., resume=True) with another network than the run's
            first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
            raise CheckpointError(f"the checkpoint holds another network than the model given: {first}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        _match_param_layout(self.optimizer)
        if state["scaler"] and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        if state["ema"] and self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self._callback_states = state["callbacks"]
        self.history = History(state["history"])
        self.epoch, self.step_in_epoch, self.partial = state["epoch"], state["step_in_epoch"], state["partial"]
        if state["trainer"]:
            self.lr_override, self.lr_scale = state["trainer"]["lr_override"], state["trainer"]["lr_scale"]
            self.stop_training = state["trainer"]["stop_training"]

    def save(self, run_dir, sums: torch.Tensor | None = None) -> None:
        """A checkpoint of where training is (``sums``: the metrics of the epoch so far). Called by every process
        alike; rank 0 writes. Random draws are seeded per step, so no RNG state is kept."""
        self.partial = self.runtime.reduce(sums).tolist() if sums is not None else None
        if not (run_dir and self.runtime.is_main):
            return
        state = self.state_dict()
        tag = f"step-{self.epoch * self.data['steps_per_epoch'] + self.step_in_epoch:09d}"
        try:
            save_checkpoint(run_dir, tag, state.pop("model"), state)
        except OSError as e:
            kept = list_checkpoints(run_dir)
            raise CheckpointWriteError(
                f"could not write checkpoint {tag} in {run_dir} ({e.strerror or e}); "
                + (f"the previous checkpoint {kept[-1].name} is intact" if kept else "no earlier checkpoint exists")
            ) from None

    def resume(self, found: tuple[Path, dict, dict], epochs: int, verbose: int = 1) -> None:
        """Continue from a checkpoint that ``checkpoint.resume_point`` found (rank 0 read it, every process
        gets it); refused when the data differs from the run's. Says where it goes on unless ``verbose`` is 0."""
        folder, model_state, state = found
        saved = state.get("data")
        if saved is not None and saved != self.data:  # another folder, or the MNIST sample instead of the full set
            raise CheckpointError(
                f"{folder}: the run trained on {saved['train_images']:,} images ({saved['steps_per_epoch']} steps "
                f"an epoch); the data found now has {self.data['train_images']:,} ({self.data['steps_per_epoch']}). "
                "A resume needs the run's own data (--data-dir to say where it is)"
            )
        try:
            self.load_state_dict({**state, "model": model_state})
        except CheckpointError as e:
            raise CheckpointError(f"{folder}: {e}") from None
        if not self.runtime.is_main:  # the metrics of the steps before the restart are summed over processes once
            self.partial = None
        say = self.runtime.print if verbose else lambda text: None  # fit(verbose=0): silent, as Keras'
        if self.stop_training:  # a callback (EarlyStopping) ended it: a resume trains nothing more
            say(f"{folder}: stopped early after epoch {self.epoch}; nothing left to train")
        elif self.epoch < epochs:
            say(f"resuming from {folder} (epoch {self.epoch + 1}, step {self.step_in_epoch})")
        else:
            say(f"{folder}: all {epochs} epochs are done; nothing left to train")

    def begin(self) -> None:
        self.callbacks.on_train_begin({})
        self.callbacks.load_state_dicts(self._callback_states)


def _match_param_layout(optimizer) -> None:
    """Give restored optimizer state the memory layout of its parameter.

    Saved tensors come back contiguous, while a channels-last parameter's moments were created
    channels-last; fused and foreach optimizer kernels walk parameter and state as flat memory, so a
    layout mismatch would silently pair the wrong elements.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(value)
