"""Layers of our own: where we can be faster than PyTorch's stock ones with the same results, and Keras'
padding="same" where PyTorch has no equivalent."""

from __future__ import annotations

import torch
from torch import nn


class _TanhViaSigmoid(torch.autograd.Function):
    # tanh(x) = 2 * sigmoid(2x) - 1. PyTorch's CPU tanh kernel runs about 5x slower than its sigmoid
    # here (measured: 2.5 ms vs 0.35 ms on LeNet-5's first activation, batch 256, AVX-512), and that
    # activation is the largest elementwise op of the network. Results agree with torch.tanh to ~2e-7.
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # grad * (1 - y^2)


class Tanh(nn.Tanh):
    """``nn.Tanh`` with a faster forward pass for float32 on CPUs, in training and inference alike; on other
    devices and dtypes, and in an exported graph (ONNX, pt2: its runtime picks the kernel), the stock op."""

    def forward(self, x):
        if torch.compiler.is_exporting() or x.device.type != "cpu" or x.dtype != torch.float32:
            return torch.tanh(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _TanhViaSigmoid.apply(x)
        return torch.sigmoid(x * 2).mul_(2).sub_(1)


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` that runs large channels-last CPU inputs as a depthwise convolution.

    oneDNN's depthwise convolution beats PyTorch's channels-last average-pool kernel on large maps:
    forward + backward of LeNet-5's first pool (28x28x6, batch 128) take 0.69 ms instead of 1.33 ms
    here; on small maps (10x10x16) the stock kernel is faster, so it keeps them. Same arithmetic: the
    mean of each non-overlapping k x k window.
    """

    def forward(self, x):
        k = self.kernel_size
        if (
            not torch.compiler.is_exporting()  # an exported graph says average pool, not this CPU kernel choice
            and x.device.type == "cpu"
            and x.dtype == torch.float32  # in bf16 the stock kernel wins
            and x.dim() == 4
            and x.shape[-1] >= 16
            and x.shape[1] > 1
            and x.is_contiguous(memory_format=torch.channels_last)
            and isinstance(k, int)
            and self.stride in (k, None, (k, k))
            and self.padding in (0, (0, 0))
            and not self.ceil_mode
            and x.shape[-1] % k == 0
            and x.shape[-2] % k == 0
        ):
            weight = torch.full((x.shape[1], 1, k, k), 1.0 / (k * k), dtype=x.dtype, device=x.device)
            weight = weight.contiguous(memory_format=torch.channels_last)
            return torch.nn.functional.conv2d(x, weight, stride=k, groups=x.shape[1])
        return super().forward(x)


class KerasSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras' (TensorFlow's) padding="same" where PyTorch's padding cannot say it: an even
    kernel or a stride above 1. The output side is ceil(side / stride); the padding that takes goes half
    (rounded down) before the image and the rest after it. Its parameters are nn.Conv2d's, so its weights are
    too. (nn.Conv2d(padding="same") pads this way for stride 1 only, and refuses strides.)"""

    def forward(self, x):
        pads = []  # F.pad's order: the last dimension first
        for side, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((-(-side // s) - 1) * s + k - side, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))
