"""Models, built by name from a registry: ``create_model("lenet5", num_classes=10)``."""

from . import alexnet, lenet, pattern  # noqa: F401  (registers their models)
from .pattern import PatternError, from_pattern, parse_pattern
from .registry import ModelEntry, create_model, get_model_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_model_entry", "list_models", "register_model"]
__all__ += ["PatternError", "from_pattern", "parse_pattern"]
