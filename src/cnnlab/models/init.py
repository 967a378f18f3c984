"""Weight initialisations.

Keras initialises kernels with Glorot (Xavier) uniform and biases with zeros; PyTorch uses
Kaiming-uniform with a=sqrt(5) and small uniform biases. For the lesson's tanh LeNet-5, Glorot is both
the faithful choice and the faster one to train (measured: benchmarks/lenet5_mnist.py).
"""

from __future__ import annotations

from torch import nn


def keras_init_(model: nn.Module) -> nn.Module:
    """Keras' defaults: Glorot-uniform kernels, zero biases, and BatchNormalization's epsilon 1e-3 and
    moving-average momentum 0.99 (PyTorch: 0.01)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = 1e-3, 0.01
    return model
