import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model, summary


def test_batchnorm_running_statistics_count_as_non_trainable_like_keras():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 4), nn.BatchNorm1d(4)
    )
    table = summary(model, (3, 8, 8))
    # Keras: BN has 4 weights per channel, gamma and beta trainable, moving mean and variance not.
    assert table.non_trainable_params == 2 * 8 + 2 * 4
    assert table.trainable_params == (3 * 9 * 8 + 8) + 2 * 8 + (288 * 4 + 4) + 2 * 4
    assert table.total_params == table.trainable_params + table.non_trainable_params


def test_lenet5_macs_match_hand_arithmetic_and_flop_counter():
    model = create_model("lenet5").eval()
    table = summary(model, (1, 28, 28))
    by_hand = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert table.macs == by_hand == 416_520
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert counter.get_total_flops() == table.flops == 2 * by_hand


def test_torch_layout_prints_channels_first():
    text = summary(create_model("lenet5"), (1, 28, 28)).format("torch")
    assert "(N, 6, 28, 28)" in text
