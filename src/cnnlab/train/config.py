"""Training configuration: typed values, each checked against its field's type and range in one place.

Every value, from a flag, a ``--config`` JSON file, a run's saved ``config.json`` or Python, passes through
``check_values`` before anything is loaded: its type comes from the dataclass annotation, its range from the
field's ``rule``. A bad value ends in one ``ConfigError`` that names the key, the value and what is expected.
JSON's types are taken as they are: ``"2"`` is text, not a number; ``"no"`` is text, not false; ``1.5`` is
not a whole number. Settings are merged (defaults < the model's recipe < file < flags) in ``recipes.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError


class ConfigError(UsageError):
    """A configuration value has the wrong type or is out of range; the message names the key, the value
    and what is expected."""


# --- rules: the range of a field, beside its type -----------------------------------------------------


def _number(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """low <= value (< or <=) high; ``None`` leaves a side open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low, high = (_number(x) if x is not None else "" for x in (self.low, self.high))
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def expected(self, type_text: str) -> str:
        return f"{type_text} {self.describe()}"


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]

    def allows(self, value) -> bool:
        return value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def expected(self, type_text: str) -> str:
        return self.describe()


class PlainName:
    """A folder name inside ``out_dir``: no path separators, not '.' or '..'."""

    def allows(self, value) -> bool:
        return value not in (".", "..") and "/" not in value and "\\" not in value

    def expected(self, type_text: str) -> str:
        return "a plain folder name (no '/', not '.' or '..')"


class NotEmpty:
    def allows(self, value) -> bool:
        return value != ""

    def expected(self, type_text: str) -> str:
        return f"{type_text}: a path, not empty"


class Device:
    """A device that exists here: auto, cpu, cuda, cuda:N, mps."""

    def allows(self, value) -> bool:
        return device_problem(value) is None

    def expected(self, type_text: str) -> str:
        return "a device that exists here: " + ", ".join(available_devices())


def available_devices() -> list[str]:
    import torch

    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def device_problem(name: str) -> str | None:
    """None when ``name`` is a device that exists here, else what is wrong with it."""
    if name in ("auto", "cpu"):
        return None
    import torch

    kind, _, index = name.partition(":")
    if kind not in ("cuda", "mps") or (index and not index.isdigit()):
        return f"{name!r} is not a device name"
    if kind == "mps":
        ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()) and not index
        return None if ok else "no MPS device here"
    if not torch.cuda.is_available():
        return "CUDA is not available here"
    if index and int(index) >= torch.cuda.device_count():
        return f"there are {torch.cuda.device_count()} CUDA device(s) here"
    return None


def setting(default, rule=None):
    """A dataclass field with a rule for its range: ``rule.allows(value)``, ``rule.expected(type_text)``."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


AT_LEAST_0, AT_LEAST_1, ABOVE_0 = Range(0), Range(1), Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)  # [0, 1)
SEED = Range(0, 2**32 - 1)  # what NumPy's and scikit-learn's seeds accept


@dataclass
class TrainConfig:
    model: str = setting("lenet5")
    recipe: str = setting("")  # a named preset on top of the model's recipe (recipes.PRESETS); "": none
    model_options: dict = setting({})  # checked against the model's builder (recipes.check_model_options)
    dataset: str = setting("mnist", OneOf(("mnist", "fashion-mnist", "folder")))  # "folder" comes with ``data``
    data_dir: str | None = setting(None, NotEmpty())  # where the IDX datasets' files are
    data: str | None = setting(None, NotEmpty())  # a folder of images (Kaggle's train/ or class subfolders)
    val_dir: str | None = setting(None, NotEmpty())  # validation images (else a stratified split of ``data``)
    image_size: int = setting(256, AT_LEAST_1)  # image folders: cached at this size (shorter side, centre crop)
    crop: int = setting(227, AT_LEAST_1)  # image folders: random training crops, the centre crop to validate
    cache_dir: str | None = setting(None, NotEmpty())  # image folders: the decoded cache (~/.cache/cnnlab/images)
    epochs: int = setting(6, AT_LEAST_1)
    batch_size: int = setting(128, AT_LEAST_1)
    optimizer: str = setting("adam", OneOf(("adam", "adamw", "sgd")))
    lr: float = setting(3e-3, ABOVE_0)
    momentum: float = setting(0.9, FRACTION)  # sgd
    nesterov: bool = setting(False)  # sgd
    weight_decay: float = setting(0.0, AT_LEAST_0)  # decoupled (adamw) or coupled (adam/sgd), as PyTorch's
    schedule: str = setting("cosine", OneOf(("cosine", "linear", "step", "constant")))  # after a linear warm-up
    warmup: float = setting(0.15, FRACTION)  # fraction of all steps
    ema: float = setting(0.0, FRACTION)  # Keras' ema_momentum: validate a moving average of the weights (0: off)
    label_smoothing: float = setting(0.0, Range(0, 1))  # Keras' CategoricalCrossentropy(label_smoothing=...)
    final_lr: float = setting(0.0, Range(0, 1))  # fraction of lr reached at the end (cosine, linear)
    seed: int = setting(42, SEED)
    device: str = setting("auto", Device())
    precision: str = setting("fp32", OneOf(("fp32", "bf16", "fp16")))  # autocast
    channels_last: bool = setting(True)
    compile: bool = setting(False)  # torch.compile: pays off on GPUs; on CPUs compiling costs more than it saves
    threads: int = setting(0, Range(0, 4096))  # 0: PyTorch's choice
    deterministic: bool = setting(False)  # GPUs: deterministic kernels, so a seed repeats exactly (CPUs do)
    sync_bn: bool = setting(False)  # several GPU processes: SyncBatchNorm (else rank 0's statistics are shared)
    timeout: float = setting(300.0, ABOVE_0)  # seconds a process waits for the others before giving up
    val_split: float = setting(0.0, FRACTION)  # 0: validate on the test set, as the lesson does
    eval_batch_size: int = setting(500, AT_LEAST_1)
    checkpoint_every: int = setting(1, AT_LEAST_0)  # epochs between resumable checkpoints (0: none)
    checkpoint_steps: int = setting(0, AT_LEAST_0)  # also every N steps inside an epoch (0: never)
    early_stopping: int = setting(0, AT_LEAST_0)  # patience in epochs on val_loss (0: off)
    nonfinite: str = setting("stop", OneOf(("stop", "skip")))  # what a NaN/inf loss does
    augment: dict | None = setting(None)  # augmentation settings (cnnlab.augment.AugmentConfig), None: none
    clean_epochs: int = setting(0, AT_LEAST_0)  # the last N epochs train without ``augment`` (folders keep crops)
    out_dir: str = setting("runs", NotEmpty())
    run_name: str = setting("", PlainName())
    dry_run: bool = setting(False)  # two batches of one epoch, to check that everything runs
    progress: bool = setting(True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, origin: str = "config") -> TrainConfig:
        """A configuration from plain values, every one checked (``origin`` names their source in errors)."""
        check_values(d, origin)
        cfg = cls(**d)
        cfg.validate(origin)
        return cfg

    def updated(self, **overrides) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **overrides})

    def validate(self, origin: str = "TrainConfig", origins: dict[str, str] | None = None) -> None:
        """Every field's type and range, then the rules between fields. ``origins`` (key -> 'flag' or a file)
        says where each value came from, for the message."""
        check_values(self.to_dict(), origin)
        say = _Namer(origin, origins)
        if self.crop > self.image_size:
            raise ConfigError(f"{say('crop')} is {self.crop}; expected at most image_size ({self.image_size})")
        if self.data and self.dataset != "folder":
            raise ConfigError(f"{say('dataset')} is {self.dataset!r}; with data (an image folder) it is 'folder'")
        if self.dataset == "folder" and not self.data:
            raise ConfigError(f"{say('dataset')} 'folder' needs data: the folder of images")
        if self.val_dir and not self.data:
            raise ConfigError(f"{say('val_dir')} is for image folders; give data (the training folder) too")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError(f"{say('nesterov')} needs a momentum above 0 (momentum is 0)")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


# --- checking values against the field types ------------------------------------------------------------


FLAG_NAMES = {"run_name": "--name", "progress": "--no-progress", "model_options": "--option"}  # else --key-name


class _Namer:
    """How a key is named in a message: ``--batch-size`` for flags, ``FILE: "batch_size"`` for a file."""

    def __init__(self, origin: str, origins: dict[str, str] | None = None):
        self.origin, self.origins = origin, origins or {}

    def __call__(self, key: str) -> str:
        origin = self.origins.get(key, self.origin)
        if origin == "flag":
            return FLAG_NAMES.get(key, "--" + key.replace("_", "-"))
        if origin == "TrainConfig":
            return key
        return f'{origin}: "{key}"'


def describe_type(hint) -> str:
    if _is_union(hint):
        return " or ".join(describe_type(h) for h in typing.get_args(hint))
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "text",
        dict: "an object {...}",
        list: "a list of numbers",
        type(None): "null",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def _is_union(hint) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def type_ok(value, hint) -> bool:
    """Whether a JSON value has the annotated type. Booleans are not numbers, numbers are not text."""
    if _is_union(hint):
        return any(type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is list:  # the only lists in settings are numeric ranges ([low, high]) and choices
        return isinstance(value, (list, tuple)) and all(type_ok(v, float) for v in value)
    raise TypeError(f"no check for the annotation {hint!r}")  # a field with a new kind of type: our bug


def show(value, kind: bool = True) -> str:
    """A value as the user wrote it (JSON), with its JSON kind where the kind is the problem."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if not kind or value is None:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return f"{text} (not a finite number)"
    kinds = {bool: "a boolean", str: "text", list: "a list", tuple: "a list", dict: "an object"}
    return f"{text} ({kinds.get(type(value)) or ('a whole number' if isinstance(value, int) else 'a number')})"


def check_value(value, hint, rule=None) -> str | None:
    """None if ``value`` fits, else 'is VALUE (kind); expected ...'."""
    if not type_ok(value, hint):
        expected = describe_type(hint)
        if rule is not None and not _is_union(hint):
            expected = rule.expected(expected)
        return f"is {show(value)}; expected {expected}"
    if value is not None and rule is not None and not rule.allows(value):
        problem = f" ({device_problem(value)})" if isinstance(rule, Device) else ""
        fits = next(h for h in typing.get_args(hint) if type_ok(value, h)) if _is_union(hint) else hint
        return f"is {show(value, kind=False)}{problem}; expected {rule.expected(describe_type(fits))}"
    return None


_HINTS: dict[str, object] = {}


def field_types() -> dict[str, object]:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def check_values(values: dict, origin: str = "config") -> None:
    """Check every key of ``values`` (a subset of TrainConfig's fields) against its field's type and range.
    ``origin``: 'flag', 'TrainConfig', or a file's path: it is named in the message."""
    say = _Namer(origin)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        hints = [m for k in unknown for m in difflib.get_close_matches(k, FIELDS, n=1)]
        raise ConfigError(
            f"{origin + ': ' if origin not in ('flag', 'TrainConfig') else ''}unknown config key(s): "
            f"{', '.join(unknown)}" + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        )
    hints = field_types()
    for key, value in values.items():
        problem = check_value(value, hints[key], FIELDS[key].metadata.get("rule"))
        if problem:
            raise ConfigError(f"{say(key)} {problem}")
    if isinstance(values.get("augment"), dict):
        check_augment(values["augment"], say("augment"))


def check_augment(settings: dict, where: str) -> None:
    """Augmentation settings against ``cnnlab.augment.AugmentConfig``'s fields and types, then Augment's own
    checks (fill mode, ranges), without drawing anything."""
    import warnings

    from ..augment import Augment, AugmentConfig

    hints = typing.get_type_hints(AugmentConfig)
    for key, value in settings.items():
        if key not in hints:
            raise ConfigError(f"{where} has no setting {key!r}; known: {', '.join(hints)}")
        problem = check_value(value, hints[key])
        if problem:
            raise ConfigError(f"{where}.{key} {problem}")
        if isinstance(value, (list, tuple)) and not value:
            raise ConfigError(f"{where}.{key} is []; expected a number or a non-empty list")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Augment's advice is for training time, not for this check
            Augment(**settings)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def load_config_file(path: str | Path) -> dict:
    """A ``--config`` file: one JSON object of TrainConfig keys, every value checked (the message names the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds one JSON object, got {show(data)}")
    check_values(data, str(path))
    return data
