"""AlexNet twice: the lesson's Keras network with batch norm, and the 2012 paper's network.

``alexnet_bn`` (the lesson): five convolutions and three dense layers for 227x227x3 input, each followed
by ReLU then BatchNorm (the order of the lesson's Keras code), max-pooling 3/2, dropout 0.25 after the
conv blocks and 0.5 after the dense ones, and an L2 penalty of 0.0002 on every conv and dense kernel
as Keras' ``kernel_regularizer=l2(0.0002)`` means it: ``0.0002 * sum(w**2)`` added to the loss (not
PyTorch's weight decay, which scales differently with Adam). The lesson's code shows ``l2(0.002)`` on two
layers of block 3, a slip against its own table; 0.0002 is used everywhere unless ``l2_block3`` says
otherwise. 58,327,810 parameters with 2 classes, 19,136 of them BatchNorm's running statistics.

``alexnet`` (Krizhevsky, Sutskever, Hinton, 2012): conv 96-256-384-384-256 with the paper's two-GPU
split kept as grouped convolutions (groups=2 in conv2, conv4 and conv5, whose kernels only saw their own
GPU's half), local response normalisation after conv1 and conv2, overlapping max-pooling 3/2, dropout
0.5 before the two hidden dense layers: 60,965,224 parameters for 1,000 classes. What differs from the
paper: the input is 227x227, not 224x224 (224 does not give the paper's 55x55 first map with an 11x11
stride-4 valid convolution; 227 does); PyTorch's ``LocalResponseNorm`` divides alpha by the window
size, so alpha=5e-4 here is the paper's 1e-4; initialisation follows the paper (weights N(0, 0.01),
biases 1 in conv2, conv4, conv5 and the hidden dense layers, 0 elsewhere).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from .init import keras_init_
from .registry import register_model


class AlexNetBN(nn.Module):
    def __init__(self, num_classes=2, in_chans=3, l2=2e-4, l2_block3=None, dropout_conv=0.25, dropout_fc=0.5):
        super().__init__()

        def conv(cin, cout, k, stride=1, padding="same"):
            return [
                nn.Conv2d(cin, cout, k, stride=stride, padding=padding),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(cout),
            ]

        def pool_dropout():
            return [nn.MaxPool2d(3, 2), nn.Dropout(dropout_conv)]

        def dense(cin, cout):
            return [nn.Linear(cin, cout), nn.ReLU(inplace=True), nn.BatchNorm1d(cout), nn.Dropout(dropout_fc)]

        self.features = nn.Sequential(
            *conv(in_chans, 96, 11, stride=4, padding=0),
            *pool_dropout(),
            *conv(96, 256, 5),
            *pool_dropout(),
            *conv(256, 384, 3),
            *conv(384, 384, 3),
            *conv(384, 256, 3),
            *pool_dropout(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), *dense(256 * 6 * 6, 4096), *dense(4096, 4096), nn.Linear(4096, num_classes)
        )
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        # Per-kernel L2 coefficients (Keras' kernel_regularizer), block 3 = the three 3x3 convolutions.
        block3 = l2 if l2_block3 is None else l2_block3
        self._l2 = [(c.weight, block3 if i >= 2 else l2) for i, c in enumerate(convs)]
        self._l2 += [(m.weight, l2) for m in self.classifier if isinstance(m, nn.Linear)]

    def forward(self, x):
        return self.classifier(self.features(x))

    def regularization_loss(self) -> torch.Tensor:
        """Keras' l2(c): c * sum(w^2) over every regularised kernel (the value Keras adds to the loss)."""
        return sum(c * w.detach().float().square().sum() for w, c in self._l2 if c)

    def regularization_loss_with_grad(self) -> torch.Tensor:
        """The penalty as a straightforward Keras port adds it to the loss (differentiable; slower)."""
        return sum(c * w.square().sum() for w, c in self._l2 if c)

    def l2_groups(self) -> list[tuple[float, list[torch.Tensor]]]:
        """Parameters grouped by their Keras L2 coefficient (0 for biases and BatchNorm).

        The gradient of c * sum(w^2) is 2c * w: exactly what Adam's and SGD's (coupled) ``weight_decay=2c``
        add to the gradient. ``fit`` uses these groups so that the penalty costs nothing per step; computing
        it through autograd over 58M weights took a quarter of each CPU step.
        """
        groups: dict[float, list] = {}
        regularised = {id(w): c for w, c in self._l2}
        for p in self.parameters():
            groups.setdefault(regularised.get(id(p), 0.0), []).append(p)
        return sorted(groups.items(), key=lambda kv: kv[0])


@register_model(input_size=(3, 227, 227))  # its training recipe: train/recipes.py
def alexnet_bn(
    num_classes: int = 2,
    in_chans: int = 3,
    l2: float = 2e-4,
    l2_block3: float | None = None,
    dropout_conv: float = 0.25,
    dropout_fc: float = 0.5,
    init: str = "torch",
) -> nn.Module:
    """The lesson's AlexNet with batch norm after every conv and dense layer (58,327,810 parameters, 2 classes).

    ``init='keras'``: Glorot-uniform kernels, zero biases, BatchNorm epsilon 1e-3 and momentum 0.99 as in
    Keras, for a faithful reproduction; ``init='torch'`` (the default): PyTorch's defaults. Chosen by
    measurement on the 2,000-image Dogs vs. Cats sample (batch 64, 29 steps an epoch): with Keras' BatchNorm
    momentum the running statistics still held mostly their initial values after 3 epochs and validation
    stayed at chance (50.0%, 50.0%, 50.0%), while PyTorch's momentum gave 54.5%, 55.5%, 54.0% and 72% by
    epoch 6. On a full-size dataset, with thousands of steps per epoch, the two presets behave alike.
    """
    if init not in ("keras", "torch"):
        raise UsageError(f"init must be 'keras' or 'torch', got {init!r}")
    model = AlexNetBN(num_classes, in_chans, l2, l2_block3, dropout_conv, dropout_fc)
    return keras_init_(model) if init == "keras" else model


class AlexNet2012(nn.Module):
    def __init__(self, num_classes=1000, in_chans=3, dropout=0.5):
        super().__init__()

        def lrn():  # the paper: k=2, n=5, alpha=1e-4, beta=0.75; PyTorch divides alpha by n
            return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)

        def conv(cin, cout, k, **options):
            return [nn.Conv2d(cin, cout, k, **options), nn.ReLU(inplace=True)]

        def dense(cin, cout):
            return [nn.Dropout(dropout), nn.Linear(cin, cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(in_chans, 96, 11, stride=4),
            lrn(),
            nn.MaxPool2d(3, 2),
            *conv(96, 256, 5, padding=2, groups=2),
            lrn(),
            nn.MaxPool2d(3, 2),
            *conv(256, 384, 3, padding=1),
            *conv(384, 384, 3, padding=1, groups=2),
            *conv(384, 256, 3, padding=1, groups=2),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), *dense(256 * 6 * 6, 4096), *dense(4096, 4096), nn.Linear(4096, num_classes)
        )
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]  # conv1-conv5, fc1-fc3
        for i, m in enumerate(layers):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 1.0 if i in (1, 3, 4, 5, 6) else 0.0)  # conv2, conv4, conv5, fc1, fc2

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(input_size=(3, 227, 227))  # its training recipe: train/recipes.py
def alexnet(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> nn.Module:
    """AlexNet as in the 2012 paper: grouped convolutions, LRN, overlapping pooling (60,965,224 parameters)."""
    return AlexNet2012(num_classes, in_chans, dropout)
