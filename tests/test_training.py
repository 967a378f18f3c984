import pytest
import torch

from cnnlab import Callback, TrainConfig, create_model, fit
from cnnlab.train.loop import lr_at


def _cfg(**kw):
    base = dict(epochs=1, batch_size=64, lr=3e-3, progress=False, checkpoint_every=0)
    return TrainConfig(**{**base, **kw})


def test_learns_real_mnist_in_a_fraction_of_an_epoch(mnist):
    train, test = mnist
    torch.manual_seed(0)
    model = create_model("lenet5")
    history = fit(model, train.subset(range(20_000)), test, _cfg(batch_size=64, schedule="constant", warmup=0.02))
    assert history["val_accuracy"][-1] >= 0.95, history.history


def test_same_seed_same_weights(synthetic_dataset):
    train, val = synthetic_dataset
    weights = []
    for _ in range(2):
        torch.manual_seed(1)
        model = create_model("lenet5")
        fit(model, train, val, _cfg(epochs=2, seed=5, deterministic=True))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    torch.manual_seed(1)
    model = create_model("lenet5")
    fit(model, train, val, _cfg(epochs=2, seed=6, deterministic=True))  # another data order
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in model.parameters()]))


def test_keras_style_callback_sees_every_hook_in_order(synthetic_dataset):
    train, val = synthetic_dataset

    class Recorder(Callback):  # the lesson's custom per-epoch callback, and batch hooks
        def __init__(self):
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(f"epoch_begin {epoch}")

        def on_batch_end(self, batch, logs=None):
            assert "loss" in logs
            self.events.append("batch")

        def on_epoch_end(self, epoch, logs=None):
            assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(logs)
            self.events.append(f"epoch_end {epoch}")

        def on_train_end(self, logs=None):
            self.events.append("train_end")

    rec = Recorder()
    fit(create_model("lenet5"), train, val, _cfg(epochs=2, batch_size=128), callbacks=[rec])
    assert rec.events == [
        "train_begin",
        "epoch_begin 0",
        *["batch"] * 4,
        "epoch_end 0",
        "epoch_begin 1",
        *["batch"] * 4,
        "epoch_end 1",
        "train_end",
    ]


def test_callback_can_stop_training_and_history_is_keras_like(synthetic_dataset):
    train, val = synthetic_dataset

    class StopAfterFirst(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.stop_training = True

    history = fit(create_model("lenet5"), train, val, _cfg(epochs=5), callbacks=[StopAfterFirst()])
    assert history.epoch == [0]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def test_learns_synthetic_bars(synthetic_dataset):
    train, val = synthetic_dataset
    torch.manual_seed(0)
    history = fit(create_model("lenet5"), train, val, _cfg(epochs=3))
    assert history["val_accuracy"][-1] > 0.9


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup=0.1, schedule="cosine")
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    step = TrainConfig(lr=1.0, warmup=0.0, schedule="step")
    assert [lr_at(s, 100, step) for s in (0, 49, 50, 75)] == pytest.approx([1, 1, 0.1, 0.01])


def test_bad_settings_are_clear_errors(synthetic_dataset):
    train, val = synthetic_dataset
    with pytest.raises(ValueError, match="epochs is 0; expected a whole number >= 1"):
        fit(create_model("lenet5"), train, val, _cfg(epochs=0))
    with pytest.raises(ValueError, match="batch size 10000 is larger than the training set"):
        fit(create_model("lenet5"), train, val, _cfg(batch_size=10_000))


def test_non_finite_loss_stops_with_epoch_and_step(synthetic_dataset):
    from cnnlab.train import NonFiniteLoss

    train, val = synthetic_dataset
    model = create_model("lenet5")
    calls = []

    def poison_third_step(module, args, output):  # a numerical blow-up at one known step
        calls.append(1)
        return output * float("nan") if len(calls) == 3 else output

    model.register_forward_hook(poison_third_step)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at epoch 1, step 3;"):
        fit(model, train, val, _cfg(epochs=2))


def test_weight_average_follows_keras_rule_with_tensorflows_warm_up():
    from cnnlab.train.ema import WeightAverage

    layer = torch.nn.Linear(3, 2)
    ema = WeightAverage(layer, momentum=0.9)
    expected = None
    for k in range(30):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        ema.update()
        w = torch.cat([p.detach().flatten() for p in layer.parameters()])
        m = min(0.9, (1 + k) / (10 + k)) if k else 0.0  # the first update copies the weights
        expected = w.clone() if expected is None else m * expected + (1 - m) * w
        torch.testing.assert_close(torch.cat([a.flatten() for a in ema.average]), expected)
    raw = torch.cat([p.detach().flatten() for p in layer.parameters()])
    with ema.swapped_in():
        torch.testing.assert_close(torch.cat([p.detach().flatten() for p in layer.parameters()]), expected)
    assert torch.equal(torch.cat([p.detach().flatten() for p in layer.parameters()]), raw)


def test_fit_with_ema_validates_and_returns_the_average(synthetic_dataset):
    train, val = synthetic_dataset

    class Shadow(Callback):  # keeps its own average of the raw weights the steps produce
        def on_train_begin(self, logs=None):
            self.avg, self.k = None, 0

        def on_batch_end(self, batch, logs=None):
            w = torch.cat([p.detach().flatten() for p in self.trainer.model.parameters()]).double()
            m = min(0.95, (1 + self.k) / (10 + self.k)) if self.k else 0.0
            self.avg = w if self.avg is None else m * self.avg + (1 - m) * w
            self.k += 1

        def on_epoch_end(self, epoch, logs=None):  # the model holds the average while callbacks run
            now = torch.cat([p.detach().flatten() for p in self.trainer.model.parameters()]).double()
            torch.testing.assert_close(now, self.avg, atol=1e-5, rtol=1e-4)

    torch.manual_seed(0)
    model = create_model("lenet5")
    shadow = Shadow()
    history = fit(model, train, val, _cfg(epochs=3, ema=0.95), callbacks=[shadow])
    final = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    torch.testing.assert_close(final, shadow.avg, atol=1e-5, rtol=1e-4)
    assert history["val_accuracy"][-1] >= 0.9
