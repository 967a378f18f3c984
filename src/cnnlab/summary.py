"""A Keras-style ``model.summary()`` for any ``nn.Module``, with multiply-accumulates per layer.

Parameters are counted as Keras counts them: trainable ones are the parameters that require a
gradient; non-trainable ones are frozen parameters plus floating-point buffers (BatchNorm's running
mean and variance, Keras' "moving" statistics). Integer buffers such as ``num_batches_tracked`` are
bookkeeping, not weights, and are left out, as Keras has no such thing.

MACs are counted for the layers that do the arithmetic (convolutions and fully connected layers),
the convention of the lesson's FLOP figures and of OpenAI's "AI and Compute": FLOPs = 2 x MACs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .errors import CnnlabError, UsageError, expect_type, image_shape
from .models import get_model_entry


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch dimension, PyTorch order (C, H, W)
    params: int
    trainable: int
    macs: int  # per example, forward


@dataclass
class ModelSummary:
    model_name: str
    input_size: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    weight_bytes: int = 0

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {**asdict(self), "macs": self.macs, "flops": self.flops}

    def format(self, layout: str = "keras") -> str:
        """The table. ``layout='keras'`` shows shapes as Keras does, (None, H, W, C); 'torch' as (N, C, H, W)."""
        shape = _keras_shape if layout == "keras" else _torch_shape
        head = ("Layer (type)", "Output Shape", "Param #", "MACs")
        body = [(f"{r.name} ({r.type})", shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}") for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) + 3 for i in range(4)]

        def line(cells):
            return "".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        rule = "=" * sum(widths)
        out = [f'Model: "{self.model_name}"  input {shape(self.input_size)}', "_" * sum(widths), line(head), rule]
        for i, row in enumerate(body):
            out.append(line(row))
            out.append("_" * sum(widths) if i < len(body) - 1 else rule)
        out += [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            "_" * sum(widths),
            f"Multiply-accumulates (forward, per example): {self.macs:,} ({self.macs / 1e6:.2f} M)",
            f"FLOPs (forward, per example, 2 per MAC): {self.flops:,} ({self.flops / 1e9:.4f} G)",
            f"Weights size: {self.weight_bytes:,} bytes ({self.weight_bytes / 2**20:.2f} MiB)",
        ]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def _keras_shape(shape) -> str:
    s = (*shape[1:], shape[0]) if len(shape) == 3 else shape  # (C, H, W) -> Keras' channels-last (None, H, W, C)
    return "(None, " + ", ".join(str(x) for x in s) + ")"


def _torch_shape(shape) -> str:
    return "(N, " + ", ".join(str(x) for x in shape) + ")"


def layer_macs(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one example through ``module`` producing ``out_shape`` (without the batch)."""
    per_example = math.prod(out_shape)
    if isinstance(module, nn.modules.conv._ConvNd):
        return per_example * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return per_example * module.in_features
    return 0


def _own_counts(module: nn.Module) -> tuple[int, int]:
    """(all, trainable) weights held directly by ``module``, counted the Keras way."""
    trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
    frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
    stats = sum(
        b.numel()
        for name, b in module.named_buffers(recurse=False)
        if b.is_floating_point() and name not in module._non_persistent_buffers_set
    )
    return trainable + frozen + stats, trainable


@dataclass
class TracedLayer:
    """A leaf layer as one forward pass met it: ``index`` in call order, shapes without the batch dimension."""

    index: int
    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def weights(self) -> int:
        return sum(p.numel() for p in self.module.parameters(recurse=False))


def trace(model: nn.Module, input_size, *, device=None) -> list[TracedLayer]:
    """Run zeros of ``input_size`` (C, H, W) through ``model`` and record every leaf layer in call order.

    The one walker of a model's layers, shared by the summary, the compute count and the advisor. Two
    examples, so that BatchNorm would work in train mode too; eval mode, so that nothing is updated. A size
    the model cannot take is refused naming it (HxWxC, as Keras writes shapes), not with torch's message."""
    expect_type(model, nn.Module, "model", "a torch.nn.Module (cnnlab.create_model makes one)")
    input_size = image_shape(input_size)
    layers: list[TracedLayer] = []
    hooks = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue  # containers hold no arithmetic of their own; their leaves are listed

        def hook(mod, args, output, name=name):
            out = output[0] if isinstance(output, (tuple, list)) else output
            in_shape = tuple(args[0].shape[1:]) if args and isinstance(args[0], torch.Tensor) else ()
            layers.append(TracedLayer(len(layers), name, mod, in_shape, tuple(out.shape[1:])))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = device or (param.device if param is not None else "cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        with torch.no_grad():
            model(torch.zeros((2, *input_size), device=device, dtype=dtype))
    except (NotImplementedError, torch.OutOfMemoryError, CnnlabError):
        raise  # a module without forward, a full device, cnnlab's own error: not a size the layers refuse
    except RuntimeError as e:  # a channel count, a fixed dense layer
        c, h, w = input_size
        raise UsageError(
            f"{getattr(model, 'cnnlab_name', type(model).__name__)} cannot take a {h}x{w}x{c} input "
            f"({str(e).splitlines()[0]}); a network with a fixed dense layer needs its own size, a pattern adapts"
        ) from None
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return layers


def summary(model: nn.Module, input_size: tuple[int, ...] | None = None, *, device=None) -> ModelSummary:
    """Run one example through ``model`` and tabulate every leaf layer (Keras' ``model.summary()``).

    ``input_size`` is (C, H, W) without the batch dimension; by default the size the registry
    designed the model for.
    """
    expect_type(model, nn.Module, "model", "a torch.nn.Module (cnnlab.create_model makes one)")
    if input_size is None:
        name = getattr(model, "cnnlab_name", None)
        if name is None:
            raise UsageError(f"give input_size (C, H, W): {type(model).__name__} is not from cnnlab's registry")
        input_size = get_model_entry(name).input_size
    input_size = image_shape(input_size)
    result = ModelSummary(model_name=getattr(model, "cnnlab_name", type(model).__name__), input_size=input_size)
    for layer in trace(model, input_size, device=device):
        total, trainable = _own_counts(layer.module)
        macs = layer_macs(layer.module, layer.out_shape)
        result.rows.append(LayerRow(layer.name, layer.kind, layer.out_shape, total, trainable, macs))
    # Totals come from the model itself, so weights of layers that the forward pass skipped still count.
    result.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result.total_params = sum(_own_counts(m)[0] for m in model.modules())
    result.non_trainable_params = result.total_params - result.trainable_params
    result.weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return result
