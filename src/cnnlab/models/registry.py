"""The model registry: every network is built by name, as in timm's ``create_model``.

A model is registered with the decorator ``@register_model``; its builder takes keyword options
(``num_classes``, ``in_chans``, ...) and returns an ``nn.Module``. Each entry also carries the input
size the network is designed for. Architectures only: training settings live in ``train/recipes.py``.
``check_input_size`` tells, before anything runs, whether a built network takes an input size, and if not,
which sizes it does take (found by running it on PyTorch's meta device: shapes only, no memory, no time).
"""

from __future__ import annotations

import bisect
import inspect
import numbers
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TYPE_WORDS, UsageError, WrongType


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (channels, height, width) the network is designed for
    description: str

    def options(self) -> dict:
        """The builder's keyword options and their defaults."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(*, input_size: tuple[int, int, int]):
    """Register ``fn`` under its own name; its docstring's first line is the description."""

    def decorator(fn: Callable[..., nn.Module]):
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[fn.__name__] = ModelEntry(fn.__name__, fn, tuple(input_size), doc[0] if doc else "")
        return fn

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, **options) -> nn.Module:
    """Build the registered model ``name`` with the given options (``num_classes=2``, ...)."""
    if not isinstance(name, str):
        raise WrongType(f"create_model: name must be a model name (text) such as 'lenet5', got {type(name).__name__}")
    entry = get_model_entry(name)
    known = entry.options()
    if unknown := sorted(set(options) - set(known)):
        raise UsageError(
            f"model {name!r} has no option {', '.join(unknown)}; its options: "
            + ", ".join(f"{k}={v!r}" for k, v in known.items())
        )
    options = checked_options(entry, options)
    model = entry.builder(**options)
    # Remembered so that a run directory can rebuild exactly this network from its metadata.
    model.cnnlab_name = name
    model.cnnlab_options = {**known, **options}
    return model


# Options a builder annotates with a plain type are checked before it runs, so that a wrong one is named here
# rather than by torch from deep inside (num_classes="10" would end in torch.empty's message).
RANGES = {  # the network's sizes, dropout probabilities and L2 factors, by the start of the option's name
    "num_classes": (1, None, "a whole number >= 1"),
    "in_chans": (1, None, "a whole number >= 1"),
    "img_size": (1, None, "a whole number >= 1"),
    "dropout": (0, 1, "a number in [0, 1]"),
    "l2": (0, None, "a number >= 0"),
}


def _is(value, hint) -> bool:
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, hint)


def checked_options(entry: ModelEntry, options: dict) -> dict:
    """``options`` with numpy's numbers made Python's (model.json records them), or WrongType/UsageError naming
    the option whose value the builder's annotation or RANGES refuse."""
    hints = typing.get_type_hints(entry.builder)
    for key, value in options.items():
        hint = hints.get(key)
        if isinstance(hint, types.UnionType):  # an optional one: l2_block3: float | None
            if value is None and type(None) in typing.get_args(hint):
                continue
            hint = next(h for h in typing.get_args(hint) if h is not type(None))
        if hint in TYPE_WORDS and not _is(value, hint):
            raise WrongType(
                f"model {entry.name!r}: option {key} must be {TYPE_WORDS[hint]}, got {value!r} ({type(value).__name__})"
            )
        low, high, words = next((r for start, r in RANGES.items() if key.startswith(start)), (None, None, ""))
        if _is(value, float) and ((low is not None and not value >= low) or (high is not None and not value <= high)):
            raise UsageError(f"model {entry.name!r}: option {key} must be {words}, got {value!r}")
    return {k: hints[k](v) if hints.get(k) in (int, float) else v for k, v in options.items()}


# --- which input sizes a built network takes ---------------------------------------------------------------


class InputSizeError(UsageError):
    """A network cannot take an input size; the message says which sizes it takes."""


def _runs_at(model: nn.Module, size: tuple[int, int, int]) -> bool:
    """Whether ``model`` runs on a (2, C, H, W) input, traced on the meta device with meta copies of its
    weights (the real ones are not touched; a batch of 2 keeps BatchNorm in training mode happy)."""
    meta = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    try:
        torch.func.functional_call(model, meta, (torch.empty(2, *size, device="meta"),))
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def accepted_input_sizes(model: nn.Module, limit: int = 1024) -> tuple[int, range, range] | None:
    """(channels, heights, widths) that ``model`` takes, each with the other side at a size that works, or
    None when no square input up to ``limit`` works. A layer's output size never shrinks as its input grows,
    so the sizes that give the final map a dense layer needs form one interval: its ends are found by
    bisection from a size that works (a few dozen meta runs instead of one per size)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    entry = _REGISTRY.get(getattr(model, "cnnlab_name", ""))
    design = [getattr(model, "cnnlab_options", {}).get("img_size"), entry.input_size[1] if entry else None]
    for c in [convs[0].in_channels] if convs else [1, 3]:
        side = next((s for s in [*filter(None, design), *range(1, limit + 1)] if _runs_at(model, (c, s, s))), None)
        if side is not None:
            break
    else:
        return None

    def interval(runs) -> range:
        first = 1 + bisect.bisect_left(range(1, side), True, key=runs)  # below side: fails, then runs
        last = side + bisect.bisect_left(range(side + 1, limit + 1), True, key=lambda s: not runs(s))
        return range(first, last + 1)

    heights = interval(lambda h: _runs_at(model, (c, h, side)))
    widths = interval(lambda w: _runs_at(model, (c, side, w)))
    return c, heights, widths


def _span(sizes: range, limit: int = 1024) -> str:
    if sizes.stop > limit:
        return f"{sizes.start} or more"
    return str(sizes.start) if len(sizes) == 1 else f"{sizes.start}-{sizes.stop - 1}"


def check_input_size(model: nn.Module, input_size: tuple[int, int, int], what: str | None = None) -> None:
    """Raise ``InputSizeError`` naming the sizes ``model`` takes if it cannot take ``input_size`` (C, H, W)."""
    if _runs_at(model, tuple(input_size)):
        return
    name = what or getattr(model, "cnnlab_name", type(model).__name__)
    c, h, w = input_size
    accepted = accepted_input_sizes(model)
    if accepted is None:
        raise InputSizeError(f"{name} cannot take a {h}x{w}x{c} input, nor any square input up to 1024x1024")
    channels, heights, widths = accepted
    takes = f"{_span(heights)} x {_span(widths)} x {channels} (height x width x channels)"
    size = getattr(model, "cnnlab_options", {}).get("img_size")
    hint = f"; its img_size option ({size}) sets the size: --option img_size=N" if size else ""
    raise InputSizeError(f"{name} takes inputs of {takes}, not {h}x{w}x{c}{hint}")
