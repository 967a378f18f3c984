"""One forward pass that records every leaf layer with its input and output shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TracedLayer:
    index: int
    name: str
    module: nn.Module
    in_shape: tuple  # without the batch dimension
    out_shape: tuple

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def weights(self) -> int:
        return sum(p.numel() for p in self.module.parameters(recurse=False))


def trace(model: nn.Module, input_size) -> list[TracedLayer]:
    layers: list[TracedLayer] = []
    hooks = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue

        def hook(mod, args, output, name=name):
            x = args[0] if args else None
            layers.append(
                TracedLayer(
                    len(layers), name, mod, tuple(x.shape[1:]) if x is not None else (), tuple(output.shape[1:])
                )
            )

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_size)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return layers
