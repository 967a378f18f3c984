"""cnnlab: the classic convolutional networks of the lesson (LeNet-5, AlexNet) in PyTorch."""

from .models import create_model, list_models
from .summary import summary
from .train import Callback, History, TrainConfig, config_for, fit

__version__ = "0.1.0"
__all__ = [
    "create_model",
    "list_models",
    "summary",
    "fit",
    "config_for",
    "Callback",
    "History",
    "TrainConfig",
    "__version__",
]
