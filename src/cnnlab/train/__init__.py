"""Training: the loop (``fit``), its configuration, Keras' callbacks, and the runtime that owns devices."""

from .callbacks import Callback, EarlyStopping, EpochTimer, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN
from .config import ConfigError, TrainConfig
from .loop import NonFiniteLoss, TrainingInterrupted, fit
from .recipes import config_for, resolve_config
from .recorders import CSVLogger, ModelCheckpoint, TensorBoard, run_directory_callbacks
from .runtime import Runtime
from .state import CheckpointWriteError, History, TrainState

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "EpochTimer", "LearningRateScheduler", "ModelCheckpoint"]
__all__ += ["ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN", "run_directory_callbacks"]
__all__ += ["TrainConfig", "ConfigError", "config_for", "resolve_config", "History", "NonFiniteLoss"]
__all__ += ["CheckpointWriteError", "TrainingInterrupted", "fit", "TrainState", "Runtime"]
