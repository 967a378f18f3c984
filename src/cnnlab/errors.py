"""The errors a user can fix, and nothing else.

Every error that a person can fix by changing what they asked for (an option, a config value, a file, a
folder, a run directory) is a ``CnnlabError``: its message names the file, option or value and says what was
expected. The command line prints it as one line, ``cnnlab: error: MESSAGE``, and exits with its
``exit_code`` (2). Anything that is not a ``CnnlabError`` (or an OSError naming a file: a full disk, a file
that went away) is a bug of cnnlab's and keeps its traceback. Nothing is sorted by where it was raised.

The subclasses also derive from the builtin a Python caller would expect (``ValueError`` for a bad value,
``TypeError`` for a wrong type, ``ImportError`` for a missing package), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np


class CnnlabError(Exception):
    """A user error: one line naming the file, option or value, exit status 2."""

    exit_code = 2
    alike = False  # raised alike by every process under torchrun: rank 0 alone says it (cli.report_error)


class UsageError(CnnlabError, ValueError):
    """A bad option, config value, argument or combination of them."""


class WrongType(CnnlabError, TypeError):
    """An argument of the Python API has the wrong type; the message names the argument."""


class DataError(CnnlabError, ValueError):
    """Data that cannot be used: a missing or damaged dataset, file, image or folder; names it."""


class RunError(CnnlabError, ValueError):
    """A run directory, checkpoint, weights or export file that is missing, locked, taken or damaged; names it."""


class TrainingError(CnnlabError, RuntimeError):
    """Training cannot go on as configured (a NaN loss, a checkpoint that cannot be written); says what is kept."""


class MissingExtra(CnnlabError, ImportError):
    """An optional package is not installed; the message names it and the extra that brings it."""


class TrainingInterrupted(CnnlabError):
    """SIGINT/SIGTERM arrived and a checkpoint was written; the message says how to resume. The exit status is
    128 + the signal, as a shell expects (130 for SIGINT, 143 for SIGTERM)."""

    alike = True  # a signal to one process stops them all (Runtime.any)

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


# The Python API's argument checks, one wording for every public function: the message names the argument,
# what was expected and what came, before any work (tests/test_api_contract.py calls each function with them).

# How a message names the kind of value a setting or an option takes (config.py, models/registry.py)
TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "an object {...}"}


def expect_type(value, kinds, name: str, expected: str) -> None:
    """``value`` is one of ``kinds`` (a bool is not a number here), else WrongType naming ``name``."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise WrongType(f"{name} must be {expected}, not {type(value).__name__} {_short(value)}")


def whole_number(value, name: str, minimum: int = 1) -> int:
    """A whole number >= ``minimum`` (numpy's integers too, never a bool)."""
    expect_type(value, numbers.Integral, name, "a whole number")
    if value < minimum:
        raise UsageError(f"{name} is {value}; expected a whole number >= {minimum}")
    return int(value)


def path_argument(value, name: str):
    """A path given as str or os.PathLike (a run directory, a file), as a pathlib.Path."""
    expect_type(value, (str, os.PathLike), name, "a path (str or os.PathLike)")
    if value == "":
        raise UsageError(f"{name} is empty; expected a path")
    return Path(value)


def image_shape(value, name: str = "input_size") -> tuple[int, int, int]:
    """(channels, height, width) of one image, each a whole number >= 1; a tuple, a list, a torch.Size or a
    one-dimensional numpy array."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    expect_type(value, (tuple, list), name, "(channels, height, width)")
    if len(value) != 3:
        raise UsageError(f"{name} {tuple(value)} has {len(value)} numbers; expected (channels, height, width)")
    return tuple(whole_number(v, name) for v in value)


def keras_layout(shape) -> bool:
    """Whether a batch of images of ``shape`` is Keras' (N, H, W, C): its last axis can be channels (grey, RGB,
    RGBA) and its second cannot. Where both can, (N, C, H, W) is the reading, as PyTorch's."""
    return len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
