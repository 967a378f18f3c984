import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model, summary


def test_batchnorm_running_statistics_count_as_non_trainable_like_keras():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4), nn.BatchNorm1d(4)
    )
    table = summary(model, (3, 8, 8))
    # What Keras' summary prints for the same layers: BatchNormalization has 4 weights per channel (gamma and
    # beta trainable, the moving mean and variance not): 32 and 16 here.
    assert [r.params for r in table.rows if r.type.startswith("BatchNorm")] == [32, 16]
    assert (table.total_params, table.non_trainable_params) == (1_428, 24)
    assert "Total params: 1,428" in table.format() and "Non-trainable params: 24" in table.format()


def test_lenet5_macs_match_hand_arithmetic_and_flop_counter():
    model = create_model("lenet5").eval()
    table = summary(model, (1, 28, 28))
    # conv1 28*28*6*25 + conv2 10*10*16*6*25 + dense 400*120 + 120*84 + 84*10 multiply-adds
    assert table.macs == 416_520
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert counter.get_total_flops() == table.flops == 2 * 416_520


def test_torch_layout_prints_channels_first():
    text = summary(create_model("lenet5"), (1, 28, 28)).format("torch")
    assert "(N, 6, 28, 28)" in text


def test_frozen_weights_count_as_non_trainable_like_keras():
    model = create_model("lenet5")
    model.features[0].requires_grad_(False)  # conv1: 6 filters of 5x5, and 6 biases
    table = summary(model, (1, 28, 28))
    assert (table.total_params, table.trainable_params, table.non_trainable_params) == (61_706, 61_550, 156)
    assert (table.rows[0].params, table.rows[0].trainable) == (156, 0)
