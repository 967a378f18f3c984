"""Keras' callbacks with Keras' names, defaults and meanings, and state that survives a resume.

Each class follows Keras 3's source (``keras/src/callbacks/*.py``, named in each class) and says where it
differs. As in Keras, a callback sees ``self.model`` (the ``nn.Module``; ``self.model.stop_training = True``
stops training after the current batch, ``fit`` sets it to False when it starts), ``self.params`` (``{"verbose":
0 or 1, "epochs": E, "steps": steps per epoch}``) and ``logs``, a plain dict: after an epoch loss, accuracy,
val_loss, val_accuracy, lr (the rate of the epoch's last step; ReduceLROnPlateau and LearningRateScheduler add it
as Keras 3's ``learning_rate`` too, as there) and seconds; after a batch, as in Keras, the loss and accuracy
since the epoch began (this process's rows); at ``on_test_end`` (fit's validation) the validation's loss and
accuracy. Beyond Keras, ``self.trainer`` is the loop's state: ``.optimizer``, ``.history``, ``.runtime``
(devices, rank 0, printing) and the learning rate rule:

- ``trainer.learning_rate = x`` (Keras' ``optimizer.learning_rate = x``): every later step uses ``x`` instead
  of ``fit``'s schedule (warm-up, then cosine, linear, step or constant). ``LearningRateScheduler`` does this.
- ``trainer.scale_learning_rate(f)``: every later step uses ``f`` times the rate it would have had, the
  schedule's shape kept. ``ReduceLROnPlateau`` does this; with ``schedule="constant"`` (and no warm-up) that
  is exactly Keras' ``optimizer.learning_rate = old * factor``.

So the rate of a step is ``(override if set else schedule(step)) * scale``; both are saved in checkpoints.

**Resume.** ``state_dict()`` / ``load_state_dict(state)`` (the base class: the attributes named in ``_kept``)
are saved in each checkpoint and loaded right after ``on_train_begin`` (which resets a callback, as in Keras),
so patience, counters, best values, the CSV file and the TensorBoard logs continue where the checkpoint left
them. Batch hooks are called only when some callback overrides them: the common case costs nothing per step.
"""

from __future__ import annotations

import math
import operator
import time
import warnings

import numpy as np

from ..errors import TrainingError, UsageError

# Metrics whose larger values are better; Keras knows this from each metric's direction.
_INCREASING_METRICS = ("accuracy",)


class Callback:
    """Keras' ``keras.callbacks.Callback`` (keras/src/callbacks/callback.py)."""

    model = None  # the nn.Module being trained, set by fit()
    params: dict = {}  # {"verbose", "epochs", "steps"}, set by fit()
    trainer = None  # the loop's state: optimizer, history, runtime, learning rate (see the module's docstring)
    # What a checkpoint keeps: {key in the checkpoint: attribute}. The keys are the checkpoint format (older
    # checkpoints must still load): rename an attribute freely, never a key.
    _kept: dict[str, str] = {}

    def set_trainer(self, trainer, params: dict) -> None:
        self.trainer, self.model, self.params = trainer, trainer.model, params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...

    # As in Keras 3, the train-batch hooks call the older on_batch_* names by default.
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    # fit's validation after each epoch, as Keras' evaluate calls them (logs without the val_ prefix)
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...

    def needs(self, *hooks: str) -> bool:
        """Whether fit must call any of ``hooks`` for this callback: it calls batch hooks, whose logs cost a little
        a step, only where needed (a class that overrides one, unless it says otherwise)."""
        return any(getattr(type(self), hook) is not getattr(Callback, hook) for hook in hooks)

    def state_dict(self) -> dict:
        """What a checkpoint keeps of this callback (JSON values and tensors): the attributes in ``_kept``."""
        return {key: getattr(self, attribute) for key, attribute in self._kept.items()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s output; called after ``on_train_begin`` when resuming."""
        for key, attribute in self._kept.items():
            setattr(self, attribute, state[key])

    def _say(self, text: str) -> None:
        """A message of a callback made with ``verbose=1`` (rank 0 prints it)."""
        if self.verbose > 0:
            self.trainer.runtime.print(text)


class CallbackList:
    def __init__(self, callbacks, trainer, params: dict):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_trainer(trainer, params)
        train_batches = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
        self.wants_batches = any(cb.needs(*train_batches) for cb in self.callbacks)
        self.wants_test_batches = any(cb.needs("on_test_batch_begin", "on_test_batch_end") for cb in self.callbacks)

    def test_batch_hooks(self, loss_of):
        """``predict_logits``' batch hooks calling Keras' on_test_batch_begin/end when a callback needs them (else
        None); a batch's logs are the loss (``loss_of(logits, labels)``, without an L2 penalty) and accuracy since
        the first batch (this process's rows)."""
        if not self.wants_test_batches:
            return None
        sums = [0.0, 0.0, 0]

        def hooks(batch, logits=None, labels=None):  # before a batch (no logits yet) and after it
            if logits is None:
                return self.on_test_batch_begin(batch, {})
            sums[0] += loss_of(logits, labels).item() * len(labels)
            sums[1] += (logits.argmax(1) == labels).sum().item()
            sums[2] += len(labels)
            self.on_test_batch_end(batch, {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]})

        return hooks

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call

    def state_dicts(self) -> list[dict]:
        return [{"callback": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks]

    def load_state_dicts(self, saved: list) -> None:
        """Give each callback the state saved for the callback of its class in the same place among those of
        its class (the 2nd ModelCheckpoint gets the 2nd saved one), so that a callback added or dropped on
        resume (TensorBoard installed since, say) does not shift the others' states."""
        by_class: dict[str, list[dict]] = {}
        for entry in saved:
            # Checkpoints of older versions saved None, or a bare state by position: nothing to match by class.
            if isinstance(entry, dict) and "callback" in entry:
                by_class.setdefault(entry["callback"], []).append(entry["state"])
        for cb in self.callbacks:
            if states := by_class.get(type(cb).__name__):
                cb.load_state_dict(states.pop(0))


def batch_logs(sums, loss, regularization, lr: float) -> dict:
    """Keras' logs of a training batch from the loop's running ``sums`` (loss x rows, correct, rows): the loss and
    accuracy since the epoch began (this process's rows), so that the last batch's are the epoch's; a non-finite
    ``loss`` is itself (it would stay in Keras' mean). And the step's lr, as cnnlab's epoch logs have it."""
    seen = max(sums[2].item(), 1)
    mean = sums[0].item() / seen + (float(regularization()) if regularization is not None else 0.0)
    loss_now = mean if math.isfinite(loss.item()) else loss.item()
    return {"loss": loss_now, "accuracy": sums[1].item() / seen, "lr": lr}


def _numeric(logs: dict) -> dict:
    return {k: v for k, v in logs.items() if isinstance(v, (int, float))}


def _improvement_op(monitor: str, mode: str, who: str):
    """``operator.lt`` (smaller is better) or ``operator.gt``, as Keras' ``MonitorCallback._set_monitor_op``
    (keras/src/callbacks/monitor_callback.py): "auto" infers the direction from the metric's name."""
    name = monitor.removeprefix("val_")
    if mode == "min" or (mode == "auto" and name == "loss"):
        return operator.lt
    if mode == "max" or (mode == "auto" and name in _INCREASING_METRICS):
        return operator.gt
    raise UsageError(
        f"{who} callback received monitor={monitor}, but cnnlab cannot tell whether that metric should be "
        "maximized or minimized. Pass mode='max' in order to monitor the highest value, or mode='min' for the "
        "lowest."
    )


def _checked_mode(mode: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{who} mode {mode} is unknown, fallback to auto mode.", stacklevel=3)
        return "auto"
    return mode


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


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving (keras/src/callbacks/early_stopping.py).

    Keras' rules, kept: the first monitored epoch always sets ``best``; each epoch adds one to ``wait``
    and an improvement (by more than ``min_delta``, and over ``baseline`` when one is given) sets it back
    to 0; training stops at the end of an epoch where ``wait >= patience``, never after the first epoch;
    epochs before ``start_from_epoch`` are not looked at. ``restore_best_weights`` puts back the weights
    (``state_dict``: buffers too, as Keras' ``get_weights``) of the best epoch when training ends, also
    when it ran to the end. Its state (wait, best, best epoch and weights) is saved in checkpoints.
    """

    _kept = {key: key for key in ("wait", "stopped_epoch", "best", "best_epoch", "best_weights")}

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = _checked_mode(mode, "EarlyStopping")
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.monitor_op = None
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        delta = -self.min_delta if self.monitor_op is operator.lt else self.min_delta
        return self.monitor_op(value - delta, reference)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self.monitor_op = _improvement_op(self.monitor, self.mode, "EarlyStopping")
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs or {})}",
                stacklevel=2,
            )
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self._weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            self._say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            self._say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)

    def _weights(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


class ReduceLROnPlateau(Callback):
    """Reduce the learning rate when a metric has stopped improving
    (keras/src/callbacks/reduce_lr_on_plateau.py).

    Keras' rules, kept: "auto" mode maximises a monitor whose name holds "acc", else minimises; an
    improvement beats the best by more than ``min_delta``; after ``patience`` epochs without one the rate
    becomes ``max(lr * factor, min_lr)`` if it is above ``min_lr``, and ``cooldown`` epochs follow in which
    ``wait`` stays 0. The reduction is ``trainer.scale_learning_rate`` (see the module's docstring): the
    rate every later step uses, ``fit``'s schedule included, is multiplied by ``new_lr / lr``, where
    ``lr`` is the rate of the epoch's last step. Its counters and best value are saved in checkpoints
    (the reduced rate is in the trainer's state).
    """

    _kept = {key: key for key in ("wait", "cooldown_counter", "best")}

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        if factor >= 1.0:
            raise UsageError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.mode = _checked_mode(mode, "Learning rate reduction")
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.minimize = self.mode == "min" or (self.mode == "auto" and "acc" not in self.monitor)
        self.best = math.inf if self.minimize else -math.inf
        self.cooldown_counter = self.wait = 0

    def _improved(self, current, best) -> bool:
        return current < best - self.min_delta if self.minimize else current > best + self.min_delta

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = logs.get("lr", self.trainer.learning_rate)  # Keras 3's history key, as it adds it
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs or {})}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = self.trainer.learning_rate
                if np.float32(old_lr) > np.float32(self.min_lr):  # as Keras compares: a rate at min_lr stays
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.trainer.scale_learning_rate(new_lr / old_lr)
                    self._say(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of each epoch, the learning rate becomes ``schedule(epoch, lr)``
    (keras/src/callbacks/learning_rate_scheduler.py).

    ``epoch`` counts from 0; ``lr`` is the rate in use: before the first call, ``TrainConfig.lr`` (Keras:
    the optimizer's initial rate), after it the rate the schedule set (times any ``ReduceLROnPlateau``
    reduction since). The rate then holds for the whole epoch: it replaces ``fit``'s own schedule (see the
    module's docstring). ``schedule(epoch)``, Keras' older one-argument form, works too. The result must
    be a float, as in Keras. Resuming in the middle of an epoch does not apply the schedule twice.
    """

    _kept = {"last_epoch": "_last_epoch"}

    def __init__(self, schedule, verbose=0):
        self.schedule = schedule
        self.verbose = verbose
        self._last_epoch = None  # the epoch whose rate is set: a resume inside it must not set it again

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self._last_epoch:
            return
        trainer = self.trainer
        lr = trainer.learning_rate if trainer.lr_override is not None else trainer.initial_learning_rate
        try:  # Keras' own test of the form, so that a schedule with defaults or a partial is called as there
            new_lr = self.schedule(epoch, lr)
        except TypeError:
            new_lr = self.schedule(epoch)
        if not isinstance(new_lr, (float, np.floating)):
            raise UsageError(f"The output of the `schedule` function should be a float. Got: {new_lr}")
        trainer.learning_rate = float(new_lr)
        self._last_epoch = epoch
        self._say(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {new_lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # Keras 3's history key, as it adds it
            logs["learning_rate"] = logs.get("lr", self.trainer.learning_rate)


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite; the message names the batch or the epoch and step."""


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite (keras/src/callbacks/terminate_on_nan.py).

    cnnlab has one rule for non-finite losses, ``TrainConfig.nonfinite``: "stop" (the default, stricter than
    Keras, which trains on) ends ``fit`` with ``NonFiniteLoss`` naming the first bad step, before that step
    changes the weights; "skip" skips such steps and reports how many. Under "skip" this callback is Keras'
    graceful stop: ``stop_training`` after the batch, or with ``raise_error=True`` the same ``NonFiniteLoss``
    (a RuntimeError, as Keras raises) at once.
    """

    def __init__(self, raise_error: bool = False):
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise NonFiniteLoss(
                    f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating training "
                    "immediately."
                )
            self.trainer.runtime.print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
