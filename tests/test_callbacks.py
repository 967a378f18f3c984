"""Keras' callbacks, checked against Keras: its signatures' defaults and the cases of its own test files
(keras/src/callbacks/*_test.py in Keras 3, cited per test; their expected values are what Keras computes),
and a run that is killed and resumed ends exactly as one that was never stopped."""

from __future__ import annotations

import csv
import functools
import importlib.util
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab import TrainConfig, create_model, fit
from cnnlab.checkpoint import load_weights_into, read_weights, save_weights
from cnnlab.data import ArrayDataset
from cnnlab.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    Runtime,
    TensorBoard,
    TerminateOnNaN,
)
from cnnlab.train.loop import lr_at
from cnnlab.train.state import TrainState

TESTS = Path(__file__).resolve().parent


def digits(n: int, seed: int) -> ArrayDataset:
    from conftest import synthetic_digits

    images, labels = synthetic_digits(n, seed)
    return ArrayDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
    )


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=64, lr=3e-3, progress=False, checkpoint_every=0, device="cpu")
    return TrainConfig(**{**base, **kw})


def attach(*callbacks, model=None, lr=0.1):
    """Callbacks driven by hand with scripted logs, as Keras' own tests drive them."""
    model = model if model is not None else nn.Linear(1, 1, bias=False)
    trainer = TrainState(model, None, Runtime("cpu"), lambda step: lr, lr)
    for cb in callbacks:
        cb.set_trainer(trainer, {"verbose": 0, "epochs": 100, "steps": 1})
        cb.on_train_begin({})
    return trainer


class ScriptedValLoss(Callback):
    """Replaces val_loss with scripted values, so that what the callbacks after it see is known."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


class UsedLearningRates(Callback):
    """The learning rate the optimizer actually used, per epoch (the set of values of its steps)."""

    def on_train_begin(self, logs=None):
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1].append(self.trainer.optimizer.param_groups[0]["lr"])


# --- Keras' defaults ---------------------------------------------------------------------------------

# The signatures of Keras' callbacks, read from Keras by scripts/make_keras_callback_fixtures.py.
KERAS_CALLBACKS = json.loads((Path(__file__).parent / "fixtures" / "keras_callbacks.json").read_text())
OURS = {
    cls.__name__: cls
    for cls in (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN, CSVLogger)
}


def _named(params) -> list[dict]:
    return [p for p in params if p["kind"] != "VAR_KEYWORD"]


def _fixture_encoding():
    """The script's own encoding of a parameter (name, kind, default), applied to ours: one owner of the format."""
    path = Path(__file__).parents[1] / "scripts" / "make_keras_callback_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_keras_callback_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.describe


@pytest.mark.parametrize("name", list(KERAS_CALLBACKS["signatures"]))
def test_signatures_and_defaults_are_keras(name):
    describe = _fixture_encoding()
    ours = [describe(p) for p in inspect.signature(OURS[name]).parameters.values() if p.name != "metadata"]
    # In order (Keras users pass some positionally); metadata is cnnlab's addition.
    assert _named(ours) == _named(KERAS_CALLBACKS["signatures"][name])


def test_a_keyword_keras_would_swallow_is_refused():
    # Keras' ReduceLROnPlateau takes **kwargs and ignores them (a typo such as min_detla trains without a word);
    # cnnlab refuses an unknown keyword, naming it.
    swallowing = [n for n, ps in KERAS_CALLBACKS["signatures"].items() if len(_named(ps)) < len(ps)]
    assert swallowing == ["ReduceLROnPlateau"]
    with pytest.raises(TypeError, match="min_detla"):
        ReduceLROnPlateau(min_detla=0.1)


# --- self.model, self.params, stop_training ------------------------------------------------------------


def test_callbacks_get_self_model_and_params_and_model_stop_training_stops_after_the_batch(synthetic_dataset):
    train, val = synthetic_dataset

    class StopAtSecondBatch(Callback):
        def on_train_begin(self, logs=None):
            self.seen = (self.model, dict(self.params))
            self.batches, self.epoch_logs = 0, []

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if batch == 1:
                self.model.stop_training = True  # Keras' way

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_logs.append(dict(logs))

    model = create_model("lenet5")
    cb = StopAtSecondBatch()
    history = fit(model, train, val, _cfg(epochs=3, batch_size=128), callbacks=[cb])
    assert cb.seen == (model, {"verbose": 2, "epochs": 3, "steps": 4})  # progress=False: epoch lines (verbose 2)
    # Keras stops after the batch, then still validates and ends the epoch.
    assert cb.batches == 2 and history.epoch == [0] and "val_loss" in cb.epoch_logs[0]


# --- EarlyStopping (keras/src/callbacks/early_stopping_test.py) -------------------------------------------


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience_as_keras(patience):
    stopper = EarlyStopping(monitor="loss", patience=patience)
    attach(stopper)
    for epoch, loss in enumerate([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]):
        stopper.on_epoch_end(epoch, {"loss": loss})
        if stopper.model.stop_training:
            break
    assert stopper.stopped_epoch == max(patience, 1) + 2  # Keras' test_early_stopping_patience


def _weights_per_epoch(stopper, losses, stop_at=None):
    """Keras' test_early_stopping_final_weights_when_restoring_model_weights: weights = the epoch's number."""
    model = nn.Linear(1, 1, bias=False)
    attach(stopper, model=model)
    trained = 0
    for epoch, loss in enumerate(losses):
        trained += 1
        with torch.no_grad():
            model.weight.fill_(epoch)
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        if epoch == stop_at:
            model.stop_training = True  # another callback stops training
        if model.stop_training:
            break
    stopper.on_train_end()
    return trained, model.weight.item()


def test_early_stopping_restore_best_weights_and_baseline_as_keras():
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    assert _weights_per_epoch(stopper, [0.2, 0.15, 0.1, 0.11, 0.12])[1] == 2
    # No epoch beats the baseline: patience epochs are run, and the best of them is restored.
    stopper = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    assert _weights_per_epoch(stopper, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]) == (5, 2)
    stopper = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    assert _weights_per_epoch(stopper, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], stop_at=3) == (4, 2)


def test_early_stopping_start_from_epoch_and_min_delta():
    def stopped_at(stopper, values, monitor="val_loss"):
        attach(stopper)
        for epoch, v in enumerate(values):
            stopper.on_epoch_end(epoch, {monitor: v})
            if stopper.model.stop_training:
                return epoch
        return None

    worse = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert stopped_at(EarlyStopping(patience=1), worse) == 1
    # Epochs before start_from_epoch are not looked at: epoch 2 is the first, epoch 3 the first without gain.
    assert stopped_at(EarlyStopping(patience=1, start_from_epoch=2), worse) == 3
    # A gain of min_delta or less is no gain; "auto" maximises accuracy.
    assert stopped_at(EarlyStopping(patience=1, min_delta=0.1), [1.0, 0.95, 0.5]) == 1
    assert stopped_at(EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.4], "val_accuracy") == 1
    assert stopped_at(EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.6, 0.7], "val_accuracy") is None
    with pytest.raises(ValueError, match="monitor=lr.*mode='max'"):
        stopped_at(EarlyStopping(monitor="lr"), [1.0], "lr")  # Keras: direction unknown


def test_early_stopping_in_fit_runs_the_keras_docstring_example(synthetic_dataset):
    # Keras' docstring: patience 3 on a loss that only gets worse -> "Only 4 epochs are run."
    train, val = synthetic_dataset
    history = fit(
        create_model("lenet5"),
        train,
        val,
        _cfg(epochs=10, batch_size=256),
        callbacks=[ScriptedValLoss([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]), EarlyStopping(patience=3)],
    )
    assert len(history.history["loss"]) == 4


# --- ModelCheckpoint (keras/src/callbacks/model_checkpoint_test.py) ------------------------------------------


def test_model_checkpoint_save_best_only_and_filepath_formatting(tmp_path, synthetic_dataset):
    train, val = synthetic_dataset
    scripted = [0.5, 0.4, 0.45, 0.3]

    class Snapshot(Callback):  # the weights at each epoch's end
        def on_train_begin(self, logs=None):
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append({k: v.clone() for k, v in self.model.state_dict().items()})

    snap = Snapshot()
    named = str(tmp_path / "named" / "w-{epoch:02d}-{val_loss:.2f}.safetensors")
    callbacks = [
        ScriptedValLoss(scripted),
        ModelCheckpoint(named, save_best_only=True),  # monitors val_loss, as in Keras
        ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True),
        ModelCheckpoint(tmp_path / "every-{epoch}.safetensors", save_weights_only=True),
        snap,
    ]
    fit(create_model("lenet5"), train, val, _cfg(epochs=4, batch_size=256), callbacks=callbacks)
    # Keras formats the epoch from 1 and saves only improvements (epoch 3 is worse than epoch 2).
    assert sorted(p.name for p in (tmp_path / "named").iterdir()) == [
        "w-01-0.50.safetensors",
        "w-02-0.40.safetensors",
        "w-04-0.30.safetensors",
    ]
    state, meta = read_weights(tmp_path / "best.safetensors")
    assert meta["epoch"] == 4 and meta["val_loss"] == 0.3
    assert all(torch.equal(state[k], snap.weights[3][k]) for k in state)
    assert sorted(p.name for p in tmp_path.glob("every-*")) == [f"every-{e}.safetensors" for e in (1, 2, 3, 4)]


def test_model_checkpoint_keras_cases_save_freq_and_threshold(tmp_path):
    train, val = digits(30, 1), digits(30, 2)
    # Case 8a: save_freq=15 with 5 batches an epoch saves at the end of epochs 3, 6 and 9.
    path = str(tmp_path / "freq" / "checkpoint.epoch{epoch:02d}.safetensors")
    fit(
        create_model("lenet5"),
        train,
        val,
        _cfg(epochs=10, batch_size=6),
        callbacks=[ModelCheckpoint(path, save_freq=15)],
    )
    assert sorted(p.name for p in (tmp_path / "freq").iterdir()) == [
        f"checkpoint.epoch{e:02d}.safetensors" for e in (3, 6, 9)
    ]
    # Case 10a: the batch in the name, counted from 1.
    path = str(tmp_path / "batch" / "e{epoch:02d}b{batch:02d}.safetensors")
    fit(
        create_model("lenet5"),
        train,
        val,
        _cfg(epochs=2, batch_size=15),
        callbacks=[ModelCheckpoint(path, save_freq=1)],
    )
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == [
        "e01b01.safetensors",
        "e01b02.safetensors",
        "e02b01.safetensors",
        "e02b02.safetensors",
    ]
    # Case 13: a val_loss of 0 was "seen before" (initial_value_threshold): nothing is better, nothing saved.
    never = tmp_path / "never.safetensors"
    keep = ModelCheckpoint(never, save_best_only=True, initial_value_threshold=0, mode="min")
    fit(create_model("lenet5"), train, val, _cfg(epochs=1, batch_size=15), callbacks=[keep])
    assert not never.exists()


def test_model_checkpoint_whole_model_rebuilds_and_bad_paths_are_clear(tmp_path, synthetic_dataset):
    train, val = synthetic_dataset
    model = create_model("lenet5", num_classes=10, init="torch")
    fit(model, train, val, _cfg(epochs=1, batch_size=256), callbacks=[ModelCheckpoint(tmp_path / "m.safetensors")])
    _, meta = read_weights(tmp_path / "m.safetensors")
    rebuilt = create_model(meta["model"], **meta["options"]).eval()
    load_weights_into(rebuilt, tmp_path / "m.safetensors")
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
    assert meta["input_norm"] == model.cnnlab_input_norm.to_dict()
    with pytest.raises(ValueError, match=r"must end in \.safetensors.*checkpoint\.keras"):
        ModelCheckpoint("checkpoint.keras")
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        ModelCheckpoint("c.safetensors", save_freq="invalid_save_freq")
    with pytest.raises(ValueError, match="save_weights_only=True for other modules"):
        attach(ModelCheckpoint(tmp_path / "plain.safetensors"))


def test_a_model_checkpoint_read_back_as_its_docstring_says_predicts_as_when_it_was_saved(tmp_path, synthetic_dataset):
    """Loaded into the model given to fit (Keras' model.load_weights), or into one rebuilt from the header with
    its input normalisation: the predictions are those of the model that was saved."""
    from cnnlab.data.arrays import ArraySource
    from cnnlab.data.loader import InputNorm
    from cnnlab.inference import evaluate_source

    train, val = synthetic_dataset
    path = tmp_path / "m.safetensors"
    model = create_model("lenet5")
    fit(model, train, val, _cfg(epochs=1, batch_size=128), callbacks=[ModelCheckpoint(path)])
    source, runtime = ArraySource(val, test=val), Runtime("cpu")

    def predict(m):  # the probabilities evaluate and predict give, through the model's input normalisation
        return evaluate_source(m, source, "test", runtime)[1][""]

    saved = predict(model)
    with torch.no_grad():  # trained on after the file was written
        for parameter in model.parameters():
            parameter.add_(0.1)
    load_weights_into(model, path)
    torch.testing.assert_close(predict(model), saved)
    _, meta = read_weights(path)
    rebuilt = create_model(meta["model"], **meta["options"])
    load_weights_into(rebuilt, path)
    rebuilt.cnnlab_input_norm = InputNorm.from_dict(meta["input_norm"])
    torch.testing.assert_close(predict(rebuilt), saved)


# --- ReduceLROnPlateau (keras/src/callbacks/reduce_lr_on_plateau_test.py) ------------------------------------


@pytest.mark.parametrize(
    "settings, epochs, keras_final_lr",
    [
        (dict(min_delta=100), 2, 0.01),  # test_reduces_lr_with_model_fit
        (dict(min_delta=10, min_lr=0.005), 4, 0.005),  # test_honors_min_lr
        (dict(min_delta=100, cooldown=2), 4, 0.001),  # test_cooldown
    ],
)
def test_reduce_lr_on_plateau_changes_the_rate_the_steps_use_as_keras(
    synthetic_dataset, settings, epochs, keras_final_lr
):
    # Keras' cases: Adam(0.1), patience 1, factor 0.1; the rate after ``epochs`` epochs. One more epoch is run
    # here to see the steps use it. A constant schedule is Keras' plain optimizer.
    train, val = synthetic_dataset
    used = UsedLearningRates()
    cb = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", **settings)
    fit(
        create_model("lenet5"),
        train,
        val,
        _cfg(epochs=epochs + 1, batch_size=256, lr=0.1, schedule="constant", warmup=0.0),
        callbacks=[cb, used],
    )
    assert used.per_epoch[-1] == pytest.approx([keras_final_lr] * 2)


def test_reduce_lr_on_plateau_scales_fits_own_schedule(synthetic_dataset):
    train, val = synthetic_dataset
    used = UsedLearningRates()
    cfg = _cfg(epochs=3, batch_size=128, lr=0.01, schedule="cosine", warmup=0.2)
    reduce = ReduceLROnPlateau(patience=1, factor=0.5, min_delta=100)  # reduces at the end of epoch 2
    history = fit(create_model("lenet5"), train, val, cfg, callbacks=[reduce, used])
    schedule = [lr_at(step, 12, cfg) for step in range(12)]
    assert used.per_epoch[0] + used.per_epoch[1] == pytest.approx(schedule[:8])
    assert used.per_epoch[2] == pytest.approx([0.5 * lr for lr in schedule[8:]])
    assert history["lr"][2] == pytest.approx(0.5 * schedule[11])


def test_reduce_lr_on_plateau_rejects_a_factor_of_one():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


# --- LearningRateScheduler (keras/src/callbacks/learning_rate_scheduler_test.py) ---------------------------------


def test_learning_rate_scheduler_as_keras(synthetic_dataset):
    train, val = synthetic_dataset
    cfg = _cfg(epochs=2, batch_size=128, lr=0.03)  # fit's own schedule (cosine, warm-up) is replaced
    used = UsedLearningRates()
    fit(create_model("lenet5"), train, val, cfg, callbacks=[LearningRateScheduler(lambda step, lr: lr / 2), used])
    # test_schedule_dependent_on_previous_learning_rate: from 0.03, two epochs end at 0.03 / 4.
    assert used.per_epoch == [[0.015] * 4, [0.0075] * 4]
    used = UsedLearningRates()
    fit(
        create_model("lenet5"),
        train,
        val,
        cfg,
        callbacks=[LearningRateScheduler(lambda step: 1.0 / (2.0 + step)), used],
    )
    assert used.per_epoch[0] == [0.5] * 4  # test_updates_learning_rate: the one-argument form
    with pytest.raises(ValueError, match="should be a float. Got: 1"):
        fit(create_model("lenet5"), train, val, cfg, callbacks=[LearningRateScheduler(lambda epoch, lr: 1)])


# --- what Keras' fit does with callbacks (scripts/make_keras_callback_fixtures.py ran it) ---------------------

KERAS_FITS = KERAS_CALLBACKS["fits"]


def test_reduce_lr_on_plateau_stops_at_min_lr_as_keras(synthetic_dataset, capsys):
    """Keras compares the rate with min_lr in float32: from 0.1 by 0.1 it reaches 0.001 and stays, two messages.
    In float64 0.1 * 0.1 * 0.1 is 0.0010000000000000002 > 0.001: a third 'reduction' to 0.001 followed."""
    keras = KERAS_FITS["reduce_lr_min_lr_cooldown"]
    train, _ = synthetic_dataset
    used = UsedLearningRates()
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.1, patience=0, min_delta=10.0, min_lr=0.001, cooldown=1)
    reduce.verbose = 1
    cfg = _cfg(epochs=len(keras["learning_rate"]), batch_size=256, lr=0.1, schedule="constant", warmup=0.0)
    history = fit(create_model("lenet5"), train, None, cfg, callbacks=[reduce, used])
    assert [epoch[0] for epoch in used.per_epoch] == pytest.approx(keras["learning_rate"], rel=1e-6)
    out = capsys.readouterr().out
    assert out.count("ReduceLROnPlateau reducing learning rate") == keras["messages"] == 2
    assert "learning_rate" not in out  # the epoch line shows lr once
    assert history.history["learning_rate"] == pytest.approx(keras["learning_rate"], rel=1e-6)  # Keras' key


def step_decay(epoch, initial=0.01):
    return initial * 0.5**epoch


def test_batch_logs_are_built_only_for_callbacks_that_use_them(tmp_path):
    """Every run directory has ModelCheckpoints, which override on_train_batch_end for Keras' save_freq=N: per
    epoch (the default) they need no batch logs, which cost AlexNet-BN's L2 penalty over 58 M weights a step."""
    from cnnlab.train.callbacks import CallbackList

    trainer = attach()
    per_epoch, per_steps = (
        ModelCheckpoint(tmp_path / "a.safetensors"),
        ModelCheckpoint(tmp_path / "b.safetensors", save_freq=5),
    )
    assert not CallbackList([per_epoch, EarlyStopping()], trainer, {}).wants_batches
    assert CallbackList([per_epoch, per_steps], trainer, {}).wants_batches
    assert CallbackList([TerminateOnNaN()], trainer, {}).wants_batches

    class Logged(ModelCheckpoint):  # a subclass with a batch hook of its own gets it, whatever its save_freq
        def on_train_batch_end(self, batch, logs=None):
            pass

    assert CallbackList([Logged(tmp_path / "c.safetensors")], trainer, {}).wants_batches


def test_learning_rate_scheduler_calls_a_schedule_as_keras_does(synthetic_dataset):
    """A partial of a schedule with a default (two parameters, one of them bound) is called schedule(epoch) after
    schedule(epoch, lr) fails, as Keras does; counting parameters called it with both and failed."""
    keras = KERAS_FITS["scheduler_partial_with_a_default"]
    train, _ = synthetic_dataset
    used = UsedLearningRates()
    scheduler = LearningRateScheduler(functools.partial(step_decay, initial=0.02))
    history = fit(create_model("lenet5"), train, None, _cfg(epochs=3, batch_size=256), callbacks=[scheduler, used])
    assert [epoch[0] for epoch in used.per_epoch] == pytest.approx(keras["learning_rate"], rel=1e-6)
    assert history.history["learning_rate"] == pytest.approx(keras["learning_rate"], rel=1e-6)


class Hooks(Callback):
    """The hooks fit calls in order, each with its logs' keys; the last train batch's logs and the epoch's."""

    def __init__(self):
        self.calls, self.batch_logs, self.epoch_logs = [], None, None

    def __getattribute__(self, name):
        hook = super().__getattribute__(name)
        if not name.startswith("on_") or name in ("on_batch_begin", "on_batch_end", "on_train_begin", "on_train_end"):
            return hook

        def record(*args):
            logs = args[-1] if args and isinstance(args[-1], dict) else {}
            self.calls.append((name, sorted(logs)))
            if name == "on_train_batch_end":
                self.batch_logs = dict(logs)
            if name == "on_epoch_end":
                self.epoch_logs = dict(logs)
            return hook(*args)

        return record


for _hook in ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end"):
    setattr(Hooks, _hook, lambda self, batch, logs=None: None)  # overridden: fit calls batch hooks for it


def collapsed(calls):
    """The calls with each repeat of a batch's (begin, end) pair folded into the first."""
    out, i = [], 0
    while i < len(calls):
        if len(out) >= 2 and calls[i : i + 2] == out[-2:]:
            i += 2
            continue
        out.append(calls[i])
        i += 1
    return out


def test_fit_calls_keras_hooks_with_keras_logs(synthetic_dataset):
    """Keras' order (train batches, then evaluate's test hooks, then on_epoch_end), the keys of each hook's logs,
    and batch logs that are the means since the epoch began: the last batch's are the epoch's loss and accuracy."""
    keras = KERAS_FITS["hooks_of_an_epoch_with_validation"]
    train, val = synthetic_dataset
    hooks = Hooks()
    fit(create_model("lenet5"), train, val, _cfg(epochs=1, batch_size=128, eval_batch_size=100), callbacks=[hooks])
    ours = [(name, [k for k in keys if k != "lr"]) for name, keys in hooks.calls]  # cnnlab's lr beside Keras' keys
    expected = [(name, keys) for name, keys in keras["calls"]]
    assert ours[-1][0] == expected[-1][0] == "on_epoch_end" and set(expected[-1][1]) <= set(ours[-1][1])
    assert collapsed(ours[:-1]) == collapsed(expected[:-1])
    assert sum(name == "on_test_batch_end" for name, _ in ours) == 3  # 256 images in batches of 100
    assert set(keras["last_batch_logs"]) == set(hooks.batch_logs) - {"lr"}
    assert keras["last_batch_logs"] == keras["epoch_logs"]
    for key in ("loss", "accuracy"):
        assert hooks.batch_logs[key] == pytest.approx(hooks.epoch_logs[key], rel=1e-6)


# --- TerminateOnNaN (keras/src/callbacks/terminate_on_nan.py) -------------------------------------------------


def _poisoned_lenet(at_call: int):
    model = create_model("lenet5")
    calls = []

    def poison(module, args, output):  # a numerical blow-up at one known step
        calls.append(1)
        return output * float("nan") if len(calls) == at_call else output

    model.register_forward_hook(poison)
    return model


def test_terminate_on_nan_stops_after_the_bad_batch(synthetic_dataset, capsys):
    train, val = synthetic_dataset

    class Count(Callback):
        def on_train_begin(self, logs=None):
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    count = Count()
    history = fit(_poisoned_lenet(3), train, val, _cfg(epochs=3, nonfinite="skip"), callbacks=[TerminateOnNaN(), count])
    assert count.batches == 3 and len(history.history["loss"]) == 1
    assert "1 of 3 steps had a non-finite loss" in capsys.readouterr().out  # it said 1 of 8: the whole epoch
    # the 12th forward pass: epoch 2's third step (8 steps of 64 images, then validation's one batch)
    history = fit(_poisoned_lenet(12), train, val, _cfg(epochs=3, nonfinite="skip"), callbacks=[TerminateOnNaN()])
    assert history["skipped_steps"] == [0, 1] and "1 of 11 steps had a non-finite loss" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        fit(_poisoned_lenet(3), train, val, _cfg(nonfinite="skip"), callbacks=[TerminateOnNaN(raise_error=True)])


# --- CSVLogger (keras/src/callbacks/csv_logger_test.py) -----------------------------------------------------


def test_csv_logger_separator_append_and_reuse_as_keras(tmp_path, synthetic_dataset):
    train, val = synthetic_dataset
    path = tmp_path / "log.tsv"
    cfg = _cfg(epochs=1, batch_size=256)
    history = fit(create_model("lenet5"), train, val, cfg, callbacks=[CSVLogger(path, separator="\t")])
    with open(path) as f:
        assert csv.Sniffer().sniff(f.read()).delimiter == "\t"
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    assert list(rows[0]) == ["epoch", *sorted(history.history)]  # Keras: epoch, then the keys sorted
    assert rows[0]["epoch"] == "0" and float(rows[0]["val_loss"]) == history["val_loss"][0]
    # Case 2: append, no second header; case 3: the same logger again, two more epochs.
    logger = CSVLogger(path, separator="\t", append=True)
    fit(create_model("lenet5"), train, val, cfg, callbacks=[logger])
    fit(create_model("lenet5"), train, val, cfg.updated(epochs=2), callbacks=[logger])
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and sum("epoch" in line for line in lines) == 1
    assert {line.count("\t") for line in lines} == {len(history.history)}
    # append=False starts afresh.
    fit(create_model("lenet5"), train, val, cfg, callbacks=[CSVLogger(path, separator="\t")])
    assert len(path.read_text().splitlines()) == 2


# --- TensorBoard (keras/src/callbacks/tensorboard.py) ---------------------------------------------------------


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_writes_keras_layout_that_tensorboard_reads(tmp_path, synthetic_dataset):
    pytest.importorskip("tensorboard")
    train, val = synthetic_dataset
    history = fit(
        create_model("lenet5"), train, val, _cfg(epochs=3, batch_size=128), callbacks=[TensorBoard(tmp_path / "logs")]
    )
    train_scalars = read_scalars(tmp_path / "logs" / "train")
    val_scalars = read_scalars(tmp_path / "logs" / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train_scalars)
    assert set(val_scalars) == {"epoch_loss", "epoch_accuracy"}
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"), ("epoch_learning_rate", "lr")):
        assert [s for s, _ in train_scalars[tag]] == [0, 1, 2]  # step = epoch from 0, as Keras
        assert [v for _, v in train_scalars[tag]] == pytest.approx(history[key], rel=1e-6)  # float32 on disk
    assert [v for _, v in val_scalars["epoch_loss"]] == pytest.approx(history["val_loss"], rel=1e-6)
    assert [v for _, v in val_scalars["epoch_accuracy"]] == pytest.approx(history["val_accuracy"], rel=1e-6)


# --- kill and resume ------------------------------------------------------------------------------------------


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Dies like a killed process: at a global step, or when training ends (after the last checkpoint)."""

    def __init__(self, step=None, at_end=False):
        self.step, self.at_end = step, at_end

    def on_train_batch_end(self, batch, logs=None):
        if self.trainer.step == self.step:
            raise Crash

    def on_train_end(self, logs=None):
        if self.at_end:
            raise Crash


def kill_resume_callbacks(folder: Path, kind: str) -> list[Callback]:
    if kind == "scheduler":
        return [
            LearningRateScheduler(lambda epoch, lr: lr * 0.7),
            ModelCheckpoint(folder / "last.safetensors"),
            CSVLogger(folder / "log.csv"),
        ]
    callbacks = [
        # min_delta makes the plateau come within 10 epochs: the learning rate is halved at the ends of
        # epochs 4, 5 and 6, and training stops after epoch 6, back to the weights of epoch 3.
        EarlyStopping(monitor="val_loss", min_delta=0.02, patience=3, restore_best_weights=True),
        ModelCheckpoint(folder / "best.safetensors", save_best_only=True),
        ModelCheckpoint(folder / "last.safetensors"),
        ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.02),
        CSVLogger(folder / "log.csv"),
    ]
    if kind == "tensorboard":
        callbacks.append(TensorBoard(folder / "logs"))
    return callbacks


def train_with_callbacks(folder, kind: str = "plateau", resume: bool = False, extra=()) -> History:
    """Epochs of 8 steps (10 of them, 4 with the scheduler), a checkpoint every 3 steps and at every epoch's
    end; ``final.safetensors`` holds the model as fit returns it (EarlyStopping restores the best epoch's)."""
    folder = Path(folder)
    torch.manual_seed(0)
    model = create_model("lenet5")
    cfg = TrainConfig(
        epochs=4 if kind == "scheduler" else 10,
        batch_size=32,
        lr=3e-3,
        progress=False,
        checkpoint_steps=3,
        seed=3,
        device="cpu",
    )
    callbacks = [*extra, *kill_resume_callbacks(folder, kind)]
    history = fit(model, digits(256, 1), digits(128, 2), cfg, callbacks, run_dir=folder, resume=resume)
    save_weights(folder / "final.safetensors", model)
    return history


def without_seconds(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


def csv_without_seconds(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(path))]


def assert_same_run(folder: Path, reference: Path, history: dict, reference_history: dict) -> None:
    assert without_seconds(history) == without_seconds(reference_history)
    for name in ("best", "last", "final"):
        if not (reference / f"{name}.safetensors").exists():
            continue
        state, meta = read_weights(folder / f"{name}.safetensors")
        ref_state, ref_meta = read_weights(reference / f"{name}.safetensors")
        assert state.keys() == ref_state.keys()
        for k in state:
            assert torch.equal(state[k], ref_state[k]), (name, k)
        assert meta.get("epoch") == ref_meta.get("epoch"), name
    assert csv_without_seconds(folder / "log.csv") == csv_without_seconds(reference / "log.csv")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}
    for kind in ("plateau", "scheduler"):
        folder = tmp_path_factory.mktemp(f"uninterrupted-{kind}")
        runs[kind] = folder, train_with_callbacks(folder, kind).history
    return runs


def test_the_reference_run_exercises_the_callbacks(uninterrupted):
    folder, history = uninterrupted["plateau"]
    assert len(history["loss"]) == 6  # early stopping after epoch 6 of 10
    _, best_meta = read_weights(folder / "best.safetensors")
    assert best_meta["epoch"] == 6 and best_meta["val_loss"] == min(history["val_loss"])
    cfg = TrainConfig(epochs=10, warmup=0.15, lr=3e-3)
    scale = [history["lr"][e] / lr_at(8 * e + 7, 80, cfg) for e in range(6)]
    assert scale == pytest.approx([1, 1, 1, 1, 0.5, 0.25])  # the plateau halved the rate twice before the end
    final, _ = read_weights(folder / "final.safetensors")
    last, _ = read_weights(folder / "last.safetensors")
    assert not all(torch.equal(final[k], last[k]) for k in final)  # restore_best_weights went back
    _, scheduled = uninterrupted["scheduler"]
    assert scheduled["lr"] == pytest.approx([3e-3 * 0.7 ** (e + 1) for e in range(4)])


@pytest.mark.parametrize(
    "kind, crash",
    [
        ("plateau", dict(step=36)),  # epoch 5: rate reduced once, patience counting
        ("plateau", dict(step=40)),  # first step of epoch 6: back to the end of epoch 5
        ("plateau", dict(at_end=True)),  # stopped and checkpointed, but killed before the weights were restored
        ("scheduler", dict(step=21)),  # inside epoch 3: the resume must not apply the schedule again
    ],
)
def test_killed_and_resumed_run_ends_as_the_uninterrupted_one(tmp_path, uninterrupted, kind, crash):
    reference, reference_history = uninterrupted[kind]
    with pytest.raises(Crash):
        train_with_callbacks(tmp_path, kind, extra=[CrashAt(**crash)])
    history = train_with_callbacks(tmp_path, kind, resume=True)
    assert_same_run(tmp_path, reference, history.history, reference_history)


def test_sigkill_at_a_random_moment_with_tensorboard_then_resume(tmp_path, uninterrupted):
    """A real process killed with SIGKILL: best and last weights, history, CSV and TensorBoard logs as if
    it had never stopped (TensorBoard hides the epochs logged after the checkpoint, by purge_step)."""
    pytest.importorskip("tensorboard")
    reference, reference_history = uninterrupted["plateau"]
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_callbacks as t; "
        f"t.train_with_callbacks({str(tmp_path)!r}, 'tensorboard', resume=bool(int(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code, "0"], env=env, stderr=subprocess.PIPE)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir())):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0.0, 2.0))  # a seeded moment after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([sys.executable, "-c", code, "1"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # The CSV holds the whole history (seconds aside).
    assert csv_without_seconds(tmp_path / "log.csv") == csv_without_seconds(reference / "log.csv")
    for name in ("best", "last", "final"):
        state, _ = read_weights(tmp_path / f"{name}.safetensors")
        ref_state, _ = read_weights(reference / f"{name}.safetensors")
        assert all(torch.equal(state[k], ref_state[k]) for k in ref_state), name
    scalars = read_scalars(tmp_path / "logs" / "train")
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"), ("epoch_learning_rate", "lr")):
        assert [s for s, _ in scalars[tag]] == list(range(len(reference_history[key])))
        assert [v for _, v in scalars[tag]] == pytest.approx(reference_history[key], rel=1e-6)
    assert [v for _, v in read_scalars(tmp_path / "logs" / "validation")["epoch_loss"]] == pytest.approx(
        reference_history["val_loss"], rel=1e-6
    )


def test_the_keys_a_checkpoint_keeps_of_each_callback_stay_those_of_earlier_releases(tmp_path):
    """The keys are the checkpoint format: a checkpoint written before must resume, whatever the attributes
    are called today (ModelCheckpoint's are Keras' private names)."""
    keys = {
        EarlyStopping(): {"wait", "stopped_epoch", "best", "best_epoch", "best_weights"},
        ReduceLROnPlateau(): {"wait", "cooldown_counter", "best"},
        LearningRateScheduler(lambda epoch: 0.1): {"last_epoch"},
        ModelCheckpoint(str(tmp_path / "w.safetensors")): {"best", "batches_seen_since_last_saving", "last_batch_seen"},
    }
    for callback, expected in keys.items():
        state = callback.state_dict()
        assert set(state) == expected, type(callback).__name__
        callback.load_state_dict({key: 7 for key in state})
        assert callback.state_dict() == {key: 7 for key in state}
