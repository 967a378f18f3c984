"""LeNet-5 as the lesson builds it in Keras.

Conv 6@5x5 (same padding) -> tanh -> AvgPool 2 -> Conv 16@5x5 (valid) -> tanh -> AvgPool 2 -> Flatten
-> Dense 120 tanh -> Dense 84 tanh -> Dense 10. Softmax lives in the loss (``cross_entropy``), the
PyTorch idiom; ``predict`` applies it. 61,706 parameters for 28x28x1 input and 10 classes.
"""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from .init import keras_init_
from .layers import AvgPool2d, Tanh
from .registry import register_model


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28):
        super().__init__()
        if img_size < 12:  # 12 -> 12 -> 6 -> 2 -> 1; pools floor odd sides, as Keras' do
            raise UsageError(f"LeNet-5 needs an input size of at least 12, got {img_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5, padding=2),  # 'same' for stride 1
            Tanh(),
            AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),  # 'valid'
            Tanh(),
            AvgPool2d(2),
        )
        side = (img_size // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            Tanh(),
            nn.Linear(120, 84),
            Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(input_size=(1, 28, 28))  # its training recipe: train/recipes.py
def lenet5(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, init: str = "keras") -> nn.Module:
    """LeNet-5 (LeCun et al., 1998) as in the lesson's Keras code: tanh, average pooling, 61,706 parameters.

    ``init='keras'`` (Glorot-uniform kernels, zero biases, as Keras) or ``'torch'`` (PyTorch's defaults).
    """
    if init not in ("keras", "torch"):
        raise UsageError(f"init must be 'keras' or 'torch', got {init!r}")
    model = LeNet5(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
    return keras_init_(model) if init == "keras" else model
