"""cnnlab: the classic convolutional networks of the lesson (LeNet-5, AlexNet) in PyTorch."""

from .environment import __version__  # one owner of the version
from .inference import evaluate
from .models import create_model, list_models
from .summary import summary
from .train import Callback, History, TrainConfig, config_for, fit

__all__ = ["create_model", "list_models", "summary", "fit", "evaluate", "config_for"]
__all__ += ["Callback", "History", "TrainConfig", "__version__"]
