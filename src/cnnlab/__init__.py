"""cnnlab: the classic convolutional networks of the lesson (LeNet-5, AlexNet) in PyTorch."""

from .models import create_model, list_models
from .summary import summary
from .train import Callback, History, TrainConfig, config_for, fit


def evaluate(model, data, **kwargs):
    """Keras' ``model.evaluate``: the classification report of a trained model on labelled data."""
    from .inference import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)


from .environment import __version__  # noqa: E402  (one owner of the version)

__all__ = [
    "create_model",
    "list_models",
    "summary",
    "fit",
    "evaluate",
    "config_for",
    "Callback",
    "History",
    "TrainConfig",
    "__version__",
]
