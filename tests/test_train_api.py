"""fit as a Python caller meets it: reproducible from its seed, wrong arguments named, skipped steps reported,
checkpoints of the previous release resumed, and the settings that were untested: the linear schedule with its
final_lr, nesterov, --early-stopping."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import synthetic_digits
from torch import nn

import cnnlab
from cnnlab import Callback, TrainConfig, create_model, fit
from cnnlab.checkpoint import load_weights_into, read_weights, save_weights
from cnnlab.errors import CnnlabError, WrongType
from cnnlab.train import NonFiniteLoss, run_directory_callbacks
from cnnlab.train.loop import lr_at

FIXTURES = Path(__file__).parent / "fixtures"


def _flat(model) -> torch.Tensor:
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


def _small(synthetic_dataset, n=128):
    train, val = synthetic_dataset
    return train.subset(range(n)), val.subset(range(64))


def test_a_checkpoint_of_the_previous_release_resumes_to_the_same_end(tmp_path):
    """tests/fixtures/checkpoint_v1 holds a mid-epoch checkpoint (EMA, EarlyStopping's state, the epoch's partial
    metrics) written by the previous release, and the weights and history that run ended with."""
    from resume_v1_case import callbacks, config, data, tiny_model

    shutil.copytree(FIXTURES / "checkpoint_v1" / "step-000000006", tmp_path / "checkpoints" / "step-000000006")
    train, val = data()
    model = tiny_model()
    history = fit(model, train, val, config(), callbacks=callbacks(), run_dir=tmp_path, resume=True)
    final, _ = read_weights(FIXTURES / "checkpoint_v1" / "final.safetensors")  # the raw weights of its last checkpoint
    now, _ = read_weights(tmp_path / "checkpoints" / "step-000000008" / "model.safetensors")
    for key, value in now.items():
        torch.testing.assert_close(value, final[key], rtol=1e-4, atol=1e-5)  # bit-exact only at one thread count
    expected = json.loads((FIXTURES / "checkpoint_v1" / "history.json").read_text())
    for key, values in expected.items():
        assert history[key] == pytest.approx(values, rel=1e-4), key
    # the checkpoint written after the resume is of today's version and resumes too
    state = json.loads((tmp_path / "checkpoints" / "step-000000008" / "state.json").read_text())["state"]
    assert ["version", 2] in state["__dict__"]


def test_two_fits_of_fresh_models_with_one_seed_give_one_result(synthetic_dataset):
    train, val = _small(synthetic_dataset)
    runs = []
    for draw in range(2):
        torch.manual_seed(100 + draw)  # whatever the caller's random state, the config's seed decides
        m = create_model("lenet5")
        history = fit(m, train, val, config=cnnlab.config_for(m, epochs=1, seed=1, progress=False, device="cpu"))
        runs.append((_flat(m), history["loss"]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    # the weights are those that cnnlab train --seed 1 starts from
    torch.manual_seed(1)
    m = create_model("lenet5")
    fit(m, train, val, config=cnnlab.config_for(m, epochs=1, seed=1, progress=False, device="cpu"))
    assert torch.equal(_flat(m), runs[0][0])


def test_fit_keeps_weights_it_did_not_draw(synthetic_dataset, tmp_path):
    """Loaded weights (fine-tuning) and a model trained before are never replaced by the seed's: the later fits
    use another seed, whose initial weights would differ (lr 1e-9: training itself barely moves them)."""
    train, val = _small(synthetic_dataset, 64)
    cfg = dict(epochs=1, batch_size=64, lr=1e-9, progress=False, device="cpu", checkpoint_every=0)
    trained = create_model("lenet5")
    fit(trained, train, val, TrainConfig(**cfg, seed=7))
    before = _flat(trained)
    save_weights(tmp_path / "w.safetensors", trained)
    fit(trained, train, val, TrainConfig(**cfg, seed=8))  # a second fit continues
    torch.testing.assert_close(_flat(trained), before, rtol=0, atol=1e-6)
    for how in ("load_weights_into", "load_state_dict"):
        loaded = create_model("lenet5")
        if how == "load_weights_into":
            load_weights_into(loaded, tmp_path / "w.safetensors")
        else:
            loaded.load_state_dict(read_weights(tmp_path / "w.safetensors")[0])
        fit(loaded, train, val, TrainConfig(**cfg, seed=8))
        torch.testing.assert_close(_flat(loaded), before, rtol=0, atol=1e-6, msg=how)


def test_every_keras_form_of_data_and_validation_data_trains_the_same(synthetic_dataset):
    """fit(model, (x, y) or an ArrayDataset, validation_data=(xv, yv) or an ArrayDataset): one history.
    (x, y) with an ArrayDataset for validation raised a TypeError from inside cnnlab until 2026-12-07."""
    train, val = _small(synthetic_dataset, 64)
    arrays = (train.images.numpy(), train.labels.numpy())
    val_arrays = (val.images.numpy(), val.labels.numpy())
    cfg = TrainConfig(epochs=1, batch_size=32, seed=3, progress=False, checkpoint_every=0, device="cpu")
    histories = [
        fit(create_model("lenet5"), data, validation, cfg)
        for data, validation in [(train, val), (arrays, val_arrays), (arrays, val), (train, val_arrays)]
    ]
    for history in histories[1:]:
        assert history["val_loss"] == histories[0]["val_loss"] and history["loss"] == histories[0]["loss"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(model="lenet5"), "model"),
        (dict(config={"epochs": 1}), "config"),
        (dict(callbacks=print), "callbacks"),
        (dict(callbacks=[print]), "callbacks"),
        (dict(runtime="cpu"), "runtime"),
    ],
)
def test_wrong_types_name_the_argument(synthetic_dataset, kwargs, name):
    train, val = _small(synthetic_dataset, 64)
    args = {"model": create_model("lenet5"), "data": train, "validation_data": val, **kwargs}
    with pytest.raises(WrongType, match=rf"fit\(\): {name} must be"):
        fit(**args)


def _poisoned(every: int):
    """lenet5 whose training forward passes give NaN on every ``every``-th call."""
    model = create_model("lenet5")
    calls = []

    def poison(module, args, output):
        if not module.training:
            return output
        calls.append(1)
        return output * float("nan") if len(calls) % every == 0 else output

    model.register_forward_hook(poison)
    return model


def test_skipped_steps_are_reported_and_a_diverging_run_stops(synthetic_dataset, capsys):
    train, val = synthetic_dataset  # 512 images: 8 steps an epoch
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False, nonfinite="skip", checkpoint_every=0, device="cpu")
    history = fit(_poisoned(4), train, val, cfg)
    assert history["skipped_steps"] == [2, 2]
    assert "4 of 16 steps had a non-finite loss and were skipped" in capsys.readouterr().out
    with pytest.raises(NonFiniteLoss, match=r"8 of 8 steps of epoch 1 had a non-finite loss"):
        fit(_poisoned(1), train, val, cfg)


def test_linear_schedule_ends_at_final_lr_and_constant_ignores_it():
    cfg = TrainConfig(lr=0.5, warmup=0.0, schedule="linear", final_lr=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(101)]  # step 100: the rate training ends at
    assert lrs[0] == pytest.approx(0.5) and lrs[50] == pytest.approx(0.5 * 0.55) and lrs[100] == pytest.approx(0.05)
    assert all(b - a == pytest.approx(-0.5 * 0.9 / 100) for a, b in zip(lrs, lrs[1:]))  # a straight line
    cosine = TrainConfig(lr=0.5, warmup=0.0, schedule="cosine", final_lr=0.1)
    assert lr_at(100, 100, cosine) == pytest.approx(0.05) and lr_at(50, 100, cosine) == pytest.approx(0.5 * 0.55)
    assert lr_at(100, 100, TrainConfig(lr=0.5, warmup=0.0, schedule="constant", final_lr=0.1)) == 0.5


def test_early_stopping_of_a_run_directory_stops_fit(synthetic_dataset, tmp_path):
    """--early-stopping 1 (the setting: fit adds Keras' EarlyStopping on val_loss) ends fit after one epoch
    without improvement, and the run directory's metrics.csv and weights say so."""
    train, val = _small(synthetic_dataset, 64)

    class RisingValLoss(Callback):  # runs before the run directory's callbacks
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = 1.0 + epoch

    model = create_model("lenet5")
    cbs = [RisingValLoss(), *run_directory_callbacks(tmp_path, {"run": "t"})]
    cfg = TrainConfig(epochs=6, batch_size=64, progress=False, checkpoint_every=0, device="cpu", early_stopping=1)
    history = fit(model, train, val, cfg, callbacks=cbs)
    assert history.epoch == [0, 1]
    with open(tmp_path / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    assert read_weights(tmp_path / "weights" / "last.safetensors")[1]["epoch"] == 2


def test_a_models_own_error_at_the_first_step_keeps_its_type_and_traceback():
    # fit's first step calls a failure a size problem only if the model also fails on zeros of that size:
    # a model's own bug (here: only in train mode) is not turned into a user error.
    class FailsInTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(28 * 28, 10)

        def forward(self, x):
            if self.training:
                raise RuntimeError("a bug in forward")
            return self.fc(x.flatten(1))

    x, y = synthetic_digits(8, seed=0)
    with pytest.raises(RuntimeError, match="a bug in forward") as caught:
        fit(FailsInTraining(), (x, y), config=TrainConfig(epochs=1, batch_size=4, progress=False))
    assert not isinstance(caught.value, CnnlabError)


def test_fit_takes_augment_early_stopping_and_val_split_from_its_settings(synthetic_dataset):
    """A setting fit was given once did nothing there (only `cnnlab train` read it): a recipe's augmentation
    (config_for(model, recipe="record")), --early-stopping, and val_split on arrays."""
    from cnnlab.augment import Augment

    train, val = _small(synthetic_dataset)
    settings = dict(epochs=1, batch_size=32, progress=False, checkpoint_every=0, device="cpu", ema=0.0)
    rotate = {"rotation_range": 30, "width_shift_range": 0.2}

    def weights(config, augment=None):
        model = create_model("lenet5")
        fit(model, train, val, config, augment=augment)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain = weights(TrainConfig(**settings))
    from_settings = weights(TrainConfig(**settings, augment=rotate))
    assert torch.equal(from_settings, weights(TrainConfig(**settings), augment=Augment(**rotate)))
    assert not torch.equal(from_settings, plain)
    with pytest.raises(CnnlabError, match="augmentation is given twice"):
        weights(TrainConfig(**settings, augment=rotate), augment=Augment(**rotate))

    x, y = train.images.numpy(), train.labels.numpy()
    history = fit(create_model("lenet5"), (x, y), config=TrainConfig(**settings, val_split=0.25))
    assert "val_accuracy" in history.history
    from cnnlab.train.loop import as_source

    held = as_source((x, y), None, 0.25, seed=42)
    assert (held.size("train"), held.size("val")) == (96, 32)  # stratified: each class loses a quarter of its images
    per_class = torch.bincount(torch.as_tensor(y), minlength=10)
    assert (torch.bincount(held.labels("val"), minlength=10) - per_class / 4).abs().max() <= 1
    with pytest.raises(CnnlabError, match="val_split 0.25 holds out validation data, and validation_data"):
        fit(create_model("lenet5"), (x, y), (x, y), TrainConfig(**settings, val_split=0.25))
    with pytest.raises(CnnlabError, match="early_stopping 1 watches val_loss: give validation data"):
        fit(create_model("lenet5"), (x, y), config=TrainConfig(**settings, early_stopping=1))


def test_fit_refuses_keras_standardize_options_that_would_change_training_images_only(synthetic_dataset):
    """ImageDataGenerator(rescale=1./255) is the Keras habit; here the input normalisation is the model's own
    (evaluate and predict use it too), so rescale on top of it trained on other pixels than it was tested on."""
    from cnnlab.augment import Augment

    train, val = _small(synthetic_dataset)
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False, checkpoint_every=0, device="cpu")
    for options in ({"rescale": 1 / 255}, {"samplewise_center": True, "rotation_range": 10}):
        with pytest.raises(CnnlabError, match=f"augment's {next(iter(options))} would change the training images"):
            fit(create_model("lenet5"), train, val, cfg, augment=Augment(**options))


def test_resuming_a_run_that_stopped_early_says_so_and_trains_nothing(synthetic_dataset, tmp_path, capsys):
    """It said 'resuming from ... (epoch 3, step 0)' and then stopped again at once."""
    train, val = _small(synthetic_dataset, 64)

    class RisingValLoss(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = 1.0 + epoch

    cfg = TrainConfig(epochs=6, batch_size=64, progress=False, device="cpu", early_stopping=1)
    first = fit(create_model("lenet5"), train, val, cfg, callbacks=[RisingValLoss()], run_dir=tmp_path)
    capsys.readouterr()
    again = fit(create_model("lenet5"), train, val, cfg, callbacks=[RisingValLoss()], run_dir=tmp_path, resume=True)
    out = capsys.readouterr().out
    assert "stopped early after epoch 2; nothing left to train" in out and "resuming from" not in out
    assert again.epoch == first.epoch == [0, 1]
    assert first.params == {"verbose": 2, "epochs": 6, "steps": 1} and first.model is not None  # Keras' History


def test_a_silent_fit_resumes_without_a_word(synthetic_dataset, tmp_path, capfd):
    """fit(..., verbose=0, run_dir=R, resume=True) printed 'resuming from R/checkpoints/... (epoch 2, step 0)', and
    once finished 'all 2 epochs are done': verbose=0 prints nothing, as in Keras, on a resume too."""
    train, val = _small(synthetic_dataset, 64)

    class StopBeforeSecondEpoch(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt  # a kill after the checkpoint of epoch 1

    cfg = TrainConfig(epochs=2, batch_size=64, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        fit(create_model("lenet5"), train, val, cfg, [StopBeforeSecondEpoch()], run_dir=tmp_path, verbose=0)
    for _ in range(2):  # the rest of the run, then a run with nothing left to train
        capfd.readouterr()
        history = fit(create_model("lenet5"), train, val, cfg, run_dir=tmp_path, resume=True, verbose=0)
        assert capfd.readouterr() == ("", "") and history.epoch == [0, 1]
