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


@pytest.mark.parametrize("name", list_models())
def test_every_model_summary_counts_match_its_parameters(name):
    model = create_model(name)
    table = summary(model)
    assert table.trainable_params == sum(p.numel() for p in model.parameters())
    assert table.total_params >= table.trainable_params
    assert sum(r.params for r in table.rows) == table.total_params


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
