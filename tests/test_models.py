import pytest
import torch
from torch import nn

from cnnlab import create_model, list_models, summary
from cnnlab.models import get_model_entry


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_runs_at_its_input_size(name):
    entry = get_model_entry(name)
    model = create_model(name, num_classes=7)
    out = model.eval()(torch.zeros(2, *entry.input_size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def running_statistics(model) -> int:
    """BatchNorm's moving mean and variance: what Keras counts as non-trainable parameters."""
    return sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))


@pytest.mark.parametrize("name", list_models())
def test_every_model_summary_rows_add_up_to_its_totals(name):
    """The rows come from one forward pass, the totals from the model's own weights: they agree only if the walk
    meets every layer that holds weights exactly once, and Keras' non-trainable count is the running statistics."""
    model = create_model(name)
    table = summary(model)
    assert sum(r.params for r in table.rows) == table.total_params
    assert sum(r.trainable for r in table.rows) == table.trainable_params
    assert table.non_trainable_params == running_statistics(model)
    assert table.total_params == sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())


@pytest.mark.parametrize(
    "name, options, total, non_trainable",
    [
        ("alexnet_bn", {"num_classes": 2}, 58_327_810, 19_136),  # the lesson's Keras summary
        ("alexnet", {}, 60_965_224, 0),  # the 2012 paper's network, 1,000 classes
    ],
)
def test_alexnet_parameter_counts_are_pinned(name, options, total, non_trainable):
    model = create_model(name, **options)
    table = summary(model)
    assert (table.total_params, table.non_trainable_params) == (total, non_trainable)
    assert f"Total params: {total:,}" in table.format()


def test_alexnet_bn_trains_in_bf16_on_the_cpu():
    """A few steps in bf16 autocast on the real architecture: the logits are bf16, the weights stay finite,
    and the cross-entropy on a repeated batch falls at every step (dropout and L2 off, so that it is the
    cross-entropy alone, without noise)."""
    from cnnlab import TrainConfig, fit
    from cnnlab.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 227, 227), generator=g, dtype=torch.uint8)
    data = ArrayDataset(images, torch.tensor([0, 1, 0, 1]), ("cat", "dog"))
    torch.manual_seed(0)
    model = create_model("alexnet_bn", num_classes=2, dropout_conv=0.0, dropout_fc=0.0, l2=0.0)
    dtypes = []
    model.classifier[-1].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    cfg = TrainConfig(
        epochs=4, batch_size=4, lr=1e-4, precision="bf16", schedule="constant", warmup=0.0, device="cpu",
        progress=False, checkpoint_every=0,
    )  # fmt: skip
    history = fit(model, data, None, cfg)
    losses = history["loss"]  # one step per epoch: the same four images each time
    assert dtypes == [torch.bfloat16] * 4
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.01 * losses[0], losses
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_lenet5_has_the_lessons_61706_parameters_and_shapes():
    table = summary(create_model("lenet5"), (1, 28, 28))
    assert table.total_params == 61_706
    assert table.trainable_params == 61_706 and table.non_trainable_params == 0
    shapes = [r.output_shape for r in table.rows if r.type in ("Conv2d", "AvgPool2d", "Flatten", "Linear")]
    # The lesson's Keras summary, channels last: 28x28x6, 14x14x6, 10x10x16, 5x5x16, 400, 120, 84, 10
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,)]
    text = table.format()
    assert "Total params: 61,706" in text
    assert "(None, 28, 28, 6)" in text and "(None, 5, 5, 16)" in text


def test_lenet5_options_change_the_head_and_input():
    model = create_model("lenet5", num_classes=3, in_chans=3, img_size=32)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert model.cnnlab_options == {"num_classes": 3, "in_chans": 3, "img_size": 32, "init": "keras"}


def test_lenet5_takes_every_input_size_its_layers_can():
    """12 is the least side (12 -> 12 -> 6 -> 2 -> 1); odd sides pool by floor, as Keras' layers do. Only sides
    divisible by 4 were taken (13 was refused, 8 let through to a Linear(0, 120))."""
    for side in (12, 13, 14, 30):
        out = create_model("lenet5", img_size=side)(torch.zeros(2, 1, side, side))
        assert out.shape == (2, 10)
    with pytest.raises(ValueError, match="LeNet-5 needs an input size of at least 12, got 8"):
        create_model("lenet5", img_size=8)


def test_lenet5_keras_init_is_glorot_with_zero_biases():
    model = create_model("lenet5")
    conv = model.features[0]
    fan_in, fan_out = 1 * 25, 6 * 25
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.8 * bound
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    torch_init = create_model("lenet5", init="torch")
    assert not (torch_init.features[0].bias == 0).all()


def test_unknown_model_and_option_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'lenet6'.*lenet5"):
        create_model("lenet6")
    with pytest.raises(ValueError, match="no option dropout"):
        create_model("lenet5", dropout=0.5)
