"""Models, built by name from a registry: ``create_model("lenet5", num_classes=10)``."""

from . import lenet  # noqa: F401  (registers its models)
from .registry import ModelEntry, create_model, get_model_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_model_entry", "list_models", "register_model"]
