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


class CnnlabError(Exception):
    """A user error: one line naming the file, option or value, exit status 2."""

    exit_code = 2


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

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
