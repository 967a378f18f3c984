"""Training: the loop (``fit``), its configuration, callbacks, and the runtime that owns devices."""

from .callbacks import Callback, CSVLogger, EarlyStopping, EpochTimer, ModelCheckpoint
from .config import TrainConfig
from .loop import CheckpointWriteError, History, NonFiniteLoss, TrainingInterrupted, fit
from .runtime import Runtime

__all__ = [
    "Callback",
    "CSVLogger",
    "EarlyStopping",
    "EpochTimer",
    "ModelCheckpoint",
    "TrainConfig",
    "History",
    "NonFiniteLoss",
    "CheckpointWriteError",
    "TrainingInterrupted",
    "fit",
    "Runtime",
]
