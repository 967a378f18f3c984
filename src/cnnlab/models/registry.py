"""The model registry: every network is built by name, as in timm's ``create_model``.

A model is registered with the decorator ``@register_model``; its builder takes keyword options
(``num_classes``, ``in_chans``, ...) and returns an ``nn.Module``. Each entry also carries the input
size the network is designed for and the training defaults that reproduce the lesson's numbers,
so that ``cnnlab train NAME`` needs no flags.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # (channels, height, width) the network is designed for
    description: str
    train_defaults: dict = field(default_factory=dict)

    def options(self) -> dict:
        """The builder's keyword options and their defaults."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(*, input_size: tuple[int, int, int], train_defaults: dict | None = None):
    """Register ``fn`` under its own name; its docstring's first line is the description."""

    def decorator(fn: Callable[..., nn.Module]):
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[fn.__name__] = ModelEntry(
            fn.__name__, fn, tuple(input_size), doc[0] if doc else "", dict(train_defaults or {})
        )
        return fn

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, **options) -> nn.Module:
    """Build the registered model ``name`` with the given options (``num_classes=2``, ...)."""
    entry = get_model_entry(name)
    known = entry.options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(unknown)}; its options: "
            + ", ".join(f"{k}={v!r}" for k, v in known.items())
        )
    model = entry.builder(**options)
    # Remembered so that a run directory can rebuild exactly this network from its metadata.
    model.cnnlab_name = name
    model.cnnlab_options = {**known, **options}
    return model
