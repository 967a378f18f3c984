"""The run behind tests/fixtures/checkpoint_v1: a checkpoint written by cnnlab's previous release (commit
de188d6, checkpoint state without a version), kept so that every later release is tested resuming it."""

import torch
from torch import nn

from cnnlab import TrainConfig
from cnnlab.train import EarlyStopping


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(16, 10),
    )  # fmt: skip


def data():
    from conftest import synthetic_digits

    def make(n, seed):
        images, labels = synthetic_digits(n, seed)
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64"))

    return make(256, 1), make(128, 2)


def config() -> TrainConfig:
    # 4 steps an epoch; a checkpoint every 2 steps: step-00000006 is in the middle of epoch 2
    return TrainConfig(
        epochs=2, batch_size=64, lr=3e-3, ema=0.9, checkpoint_steps=2, checkpoint_every=1, progress=False,
        device="cpu", seed=3,
    )  # fmt: skip


def callbacks():
    return [EarlyStopping(monitor="val_loss", patience=5)]
