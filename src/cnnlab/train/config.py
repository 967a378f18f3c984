"""Training settings, each declared once: its type, range and default (a pydantic model in strict mode), its
help and flag (``Setting``), and when it does something (``Needs``). From that one declaration come the
``cnnlab train`` flags (cli/_settings.py), the checks of every value from a flag, a ``--config`` file, a
preset, a run's ``config.json`` or Python, and ``config.json`` itself (``TrainConfig.record``).

A bad value ends in one ``ConfigError`` that names where it came from (``--epochs``, ``FILE: "epochs"``,
``--recipe record: "epochs"``), the value and what is expected. JSON's types are taken as they are: ``"2"``
is text, not a number; ``true`` is not 1; ``1.5`` is not a whole number; NaN and infinities are refused.
Settings are merged (defaults < the model's recipe < a preset < file < flags) in ``recipes.py``.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
import os
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.functional_validators import BeforeValidator

from ..augment import Augment, AugmentConfig
from ..errors import TYPE_WORDS, UsageError
from .runtime import available_devices, device_problem


class ConfigError(UsageError):
    """A configuration value has the wrong type or is out of range; the message names the key, the value
    and what is expected."""


# --- what is declared beside a type: help, flag, and when the setting does something ------------------------


@dataclass(frozen=True)
class Needs:
    """A setting that does something only when ``applies(cfg)``; given otherwise it is refused: ``why(cfg, option)``."""

    applies: Callable[[TrainConfig], bool]
    why: Callable[[TrainConfig, Callable[..., str]], str]


@dataclass(frozen=True)
class Setting:
    """A setting as the command line shows it. ``flag``: '' for ``--key-name``; ``choices``: narrower on the
    command line than in a file (``folder`` comes with ``--data``)."""

    help: str
    flag: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    needs: Needs | None = None


def setting(default, help: str, **about):
    """A field's default, with its ``Setting`` (help, flag, metavar, choices, needs) among its metadata."""
    info = Field(default, description=help)
    info.metadata.append(Setting(help, **about))
    return info


@dataclass(frozen=True)
class Expect:
    """What a value must be, where the type and its bounds do not say it."""

    describe: Callable[[], str]


FOLDER = Needs(lambda c: bool(c.data), lambda c, n: f"is for image folders; it does nothing without {n('data')}")
IDX = Needs(
    lambda c: not c.data, lambda c, n: f"is where the IDX datasets' files are; it does nothing with {n('data')}"
)
SGD = Needs(
    lambda c: c.optimizer == "sgd", lambda c, n: f"is for {n('optimizer', 'sgd')}; it does nothing with {c.optimizer}"
)
DECAY = Needs(
    lambda c: c.schedule in ("cosine", "linear"),
    lambda c, n: f"is where the cosine and linear schedules end; it does nothing with {n('schedule', c.schedule)}",
)
SPLIT = Needs(
    lambda c: not c.val_dir, lambda c, n: f"holds out part of the training data; it does nothing with {n('val_dir')}"
)


def _refuse(problem: Callable[[Any], str | None]) -> AfterValidator:
    def check(value):
        if (text := problem(value)) is not None:
            raise ValueError(text)
        return value

    return AfterValidator(check)


def _plain_name(name: str) -> str | None:
    return "" if name in (".", "..") or "/" in name or "\\" in name else None


Count = Annotated[int, Ge(0)]
Positive = Annotated[int, Ge(1)]
Fraction = Annotated[float, Ge(0), Lt(1)]
Share = Annotated[float, Ge(0), Le(1)]
# A folder given as a Path is its text, as config.json holds it
Folder = Annotated[str, MinLen(1), BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]
Device = Annotated[
    str, _refuse(device_problem), Expect(lambda: "a device that exists here: auto, " + ", ".join(available_devices()))
]
PlainName = Annotated[str, _refuse(_plain_name), Expect(lambda: "a plain folder name (no '/', not '.' or '..')")]
STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


# Photos at 227x227: an evaluation batch of 500 holds 1.0 GB of activations, 200 holds 0.4 GB, and both evaluate
# as fast (the forward pass is compute-bound past 64); measured on the full Dogs vs. Cats folder (issue 21).
FOLDER_EVAL_BATCH_SIZE = 200


def _python(value):
    return value.item() if isinstance(value, np.generic) else value  # np.int64(2) is 2, as in Keras


class TrainConfig(BaseModel):
    """Every training setting. ``TrainConfig(epochs=20)`` checks each value's type and range; ``from_dict``
    and ``validate`` also check the combination. A bad value is a ConfigError naming it and its source."""

    model_config = ConfigDict(**STRICT, protected_namespaces=(), validate_assignment=True)

    def __init__(self, _source: Namer | None = None, /, **values):
        values = {k: _python(v) for k, v in values.items()}
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _config_error(e, values, TrainConfig, _source or Namer("TrainConfig")) from None

    def __setattr__(self, key: str, value):  # cfg.epochs = np.int64(3): converted and checked as in construction
        try:
            super().__setattr__(key, _python(value))
        except ValidationError as e:
            raise _config_error(e, {key: _python(value)}, TrainConfig, Namer("TrainConfig")) from None

    model: str = setting("lenet5", "registered model name (see 'cnnlab models')", flag="MODEL")
    recipe: str = setting(
        "", "a named preset on top of the model's recipe (lenet5: record; alexnet_bn: challenge)", metavar="NAME"
    )
    model_options: dict[str, Any] = setting({}, "model option (repeatable)", flag="--option", metavar="KEY=VALUE")
    dataset: Literal["mnist", "fashion-mnist", "folder"] = setting(
        "mnist", "the IDX dataset ('folder' comes with --data)", choices=("mnist", "fashion-mnist")
    )
    data_dir: Folder | None = setting(None, "folder holding the dataset's files (or its subfolder)", needs=IDX)
    data: Folder | None = setting(
        None, "a folder of images: Kaggle's train/ (cat.1.jpg) or class subfolders", metavar="FOLDER"
    )
    val_dir: Folder | None = setting(
        None, "validation images (default: a stratified split of --data)", metavar="FOLDER", needs=FOLDER
    )
    image_size: Positive = setting(256, "image folders: cache size (shorter side, centre crop; 256)", needs=FOLDER)
    crop: Positive = setting(227, "image folders: training crop size (227)", needs=FOLDER)
    cache_dir: Folder | None = setting(
        None, "image folders: where the decoded cache goes (~/.cache/cnnlab/images)", needs=FOLDER
    )
    epochs: Positive = setting(6, "passes over the training set")
    batch_size: Positive = setting(128, "images per step (with --nproc: the global batch)")
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "the optimizer")
    lr: Annotated[float, Gt(0)] = setting(3e-3, "the learning rate after warm-up")
    momentum: Fraction = setting(0.9, "SGD's momentum", needs=SGD)
    nesterov: bool = setting(False, "SGD with Nesterov momentum", needs=SGD)
    weight_decay: Annotated[float, Ge(0)] = setting(0.0, "decoupled (adamw) or coupled (adam, sgd), as PyTorch's")
    schedule: Literal["cosine", "linear", "step", "constant"] = setting("cosine", "the lr after a linear warm-up")
    warmup: Fraction = setting(0.15, "fraction of the steps spent warming up")
    ema: Fraction = setting(
        0.0, "validate and keep a moving average of the weights (Keras' use_ema/ema_momentum, with TensorFlow's "
        "warm-up: min(m, (1 + step) / (10 + step)); 0: off)",
        metavar="MOMENTUM",
    )  # fmt: skip
    label_smoothing: Share = setting(
        0.0, "Keras' CategoricalCrossentropy(label_smoothing=...): targets (1 - s) * one-hot + s / classes"
    )
    final_lr: Share = setting(
        0.0, "the fraction of --lr the schedule ends at, after its last step as torch's (cosine, linear)", needs=DECAY
    )
    seed: Annotated[int, Ge(0), Le(2**32 - 1)] = setting(42, "initialisation, data order, augmentation, splits")
    device: Device = setting("auto", "auto, cpu, cuda, cuda:1, mps")
    precision: Literal["fp32", "bf16", "fp16"] = setting("fp32", "autocast precision")
    channels_last: bool = setting(True, "channels-last memory format")
    compile: bool = setting(False, "torch.compile the model (pays off on GPUs, not on CPUs)")
    threads: Annotated[int, Ge(0), Le(4096)] = setting(0, "CPU threads (0: PyTorch's choice)")
    deterministic: bool = setting(False, "GPUs: deterministic kernels (exact repeats, slower); CPUs are exact anyway")
    sync_bn: bool = setting(
        False, "SyncBatchNorm across GPU processes (else rank 0's statistics are shared; one process: nothing)"
    )
    timeout: Annotated[float, Gt(0)] = setting(300.0, "how long a process waits for the others", metavar="SECONDS")
    val_split: Fraction = setting(
        0.0, "hold out this fraction of the training data (0: validate on the test set)", needs=SPLIT
    )
    eval_batch_size: Positive = setting(
        500, f"batch size of validation and of the test report (500; {FOLDER_EVAL_BATCH_SIZE} for image folders)"
    )
    checkpoint_every: Count = setting(1, "epochs between resumable checkpoints (0: none)", metavar="EPOCHS")
    checkpoint_steps: Count = setting(0, "also every N steps inside an epoch (0: never)", metavar="STEPS")
    early_stopping: Count = setting(0, "stop after N epochs without a better val_loss (0: off)", metavar="PATIENCE")
    nonfinite: Literal["stop", "skip"] = setting("stop", "what a NaN/inf loss does")
    augment: dict[str, Any] | None = setting(None, "Keras ImageDataGenerator's arguments", flag="--augment")
    clean_epochs: Count = setting(
        0, "with augmentation: train the last N epochs on unaugmented images, the distribution tested on", metavar="N"
    )
    out_dir: Folder = setting("runs", "where run directories go (default: runs)")
    run_name: PlainName = setting("", "run directory name (default: MODEL-DATA-TIME)", flag="--name")
    dry_run: bool = setting(False, "two batches of one epoch: check that all runs")
    progress: bool = setting(True, "no progress bars", flag="--no-progress")

    def to_dict(self) -> dict:
        return self.model_dump()

    def record(self) -> dict:
        """What ``config.json`` keeps: every setting that does something in this run, and none that does not
        (``momentum`` of an adam run, ``crop`` of an MNIST run); a resume reads the rest as their defaults."""
        return {k: v for k, v in self.to_dict().items() if applies(self, k)}

    @classmethod
    def from_dict(cls, d: dict, origin: str = "config", origins: dict[str, str] | None = None) -> TrainConfig:
        """A configuration from plain values, every one checked: ``origin`` (a file, 'flag') names their source
        in messages, ``origins`` (key -> source) a source per key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{origin}: a configuration is one JSON object, got {show(d)}")
        say = Namer(origin, origins)
        cfg = cls(say, **d)
        if cfg.data and cfg.crop > cfg.image_size:
            raise ConfigError(f"{say('crop')} is {cfg.crop}; expected at most image_size ({cfg.image_size})")
        if cfg.data and cfg.dataset != "folder":
            raise ConfigError(f"{say('dataset')} is {cfg.dataset!r}; with data (an image folder) it is 'folder'")
        if cfg.dataset == "folder" and not cfg.data:
            raise ConfigError(f"{say('dataset')} 'folder' needs data: the folder of images")
        if cfg.nesterov and cfg.optimizer == "sgd" and cfg.momentum == 0:
            raise ConfigError(f"{say('nesterov')} needs a momentum above 0 (momentum is 0)")
        if cfg.augment:
            check_augment(cfg.augment, say("augment"), new=False)  # flags and files were checked as new ones
        for key, source in (origins or {}).items():
            idle = key in SETTINGS and not applies(cfg, key)
            if idle and (source in GIVEN or getattr(cfg, key) != TrainConfig.model_fields[key].default):
                raise ConfigError(f"{say(key)} {SETTINGS[key].needs.why(cfg, Namer(source).option)}")
        return cfg

    def updated(self, **overrides) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **overrides}, "TrainConfig")

    def validate(self, origin: str = "TrainConfig", origins: dict[str, str] | None = None) -> None:
        """``from_dict``'s checks of this configuration's values (they may have been assigned since): every
        field's type and range, then the rules between fields. ``origins`` (key -> 'flag', a file or a preset)
        says where each value came from: a setting given there that does nothing with the others is refused."""
        TrainConfig.from_dict(self.to_dict(), origin, origins)


SETTINGS: dict[str, Setting] = {
    key: next(m for m in field.metadata if isinstance(m, Setting)) for key, field in TrainConfig.model_fields.items()
}


def applies(cfg: TrainConfig, key: str) -> bool:
    """Whether setting ``key`` does something in the run ``cfg`` describes."""
    needs = SETTINGS[key].needs
    return needs is None or needs.applies(cfg)


def flag_name(key: str) -> str:
    """The flag that sets ``key``: its own (``--val-dir``) or the key spelt as a flag."""
    setting = SETTINGS.get(key)
    return (setting and setting.flag) or "--" + key.replace("_", "-")


# --- messages: where a value came from, what it is, what was expected ---------------------------------------


GIVEN = ("flag", "keyword")  # the origins of a value its caller named: a flag, a Python keyword (config_for)


class Namer:
    """How a key is named in a message: ``--batch-size`` for flags, ``FILE: "batch_size"`` for a file,
    ``--recipe record: "epochs"`` for a preset, the bare key for Python ("TrainConfig", "keyword")."""

    def __init__(self, origin: str, origins: dict[str, str] | None = None):
        self.origin, self.origins = origin, origins or {}

    def __call__(self, key: str) -> str:
        origin = self.origins.get(key, self.origin)
        if origin == "flag":
            return flag_name(key)
        if origin in ("TrainConfig", "keyword"):
            return key
        return f'{origin}: "{key}"'

    def option(self, key: str, value=None) -> str:
        """Another setting as this origin's caller gives it: ``optimizer='sgd'`` in Python, else ``--optimizer sgd``."""
        if self.origin in ("TrainConfig", "keyword"):
            return key if value is None else f"{key}={value!r}"
        return flag_name(key) if value is None else f"{flag_name(key)} {value}"


def _config_error(e: ValidationError, values: dict, model: type[BaseModel], name: Callable) -> ConfigError:
    """pydantic's first error as one line naming the key (``name(key)``), the value and what is expected;
    unknown keys (``model`` forbids them) with a guess at the key meant."""
    errors = e.errors()
    unknown = sorted({str(err["loc"][0]) for err in errors if err["type"] in ("extra_forbidden", "no_such_attribute")})
    if unknown:  # only TrainConfig forbids keys: name is a Namer
        hints = [m for k in unknown for m in difflib.get_close_matches(k, model.model_fields, n=1)]
        where = f"{name.origin}: " if name.origin not in (*GIVEN, "TrainConfig") else ""
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        return ConfigError(f"{where}unknown config key(s): {', '.join(unknown)}{hint}")
    key = str(errors[0]["loc"][0])
    field = model.model_fields[key]
    return ConfigError(f"{name(key)} {problem(values[key], errors[0], field.annotation, field.metadata)}")


def problem(value, error: dict, hint, metadata=()) -> str:
    """'is VALUE (kind); expected ...': the value's JSON kind is shown where the kind is what is wrong."""
    kind = error["type"].endswith("_type") or error["type"] == "finite_number"
    if error["type"] == "literal_error":
        kind = not isinstance(value, str)
    cause = str(error.get("ctx", {}).get("error", "")) if error["type"] == "value_error" else ""
    return f"is {show(value, kind)}{f' ({cause})' if cause else ''}; expected {expected(hint, metadata)}"


def value_problem(value, hint) -> str | None:
    """None if ``value`` is a ``hint`` (strictly, as a JSON value), else 'is VALUE (kind); expected ...'."""
    try:
        TypeAdapter(hint, config=STRICT).validate_python(value)
    except ValidationError as e:
        return problem(value, e.errors()[0], hint)
    return None


def expected(hint, metadata=()) -> str:
    """What a value of type ``hint`` with ``metadata`` (bounds, Expect) must be, in words."""
    if typing.get_origin(hint) is Annotated:
        base, *more = typing.get_args(hint)
        return expected(base, (*metadata, *more))
    custom = next((m for m in metadata if isinstance(m, Expect)), None)
    if custom is not None:
        return custom.describe()
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join("null" if h is type(None) else expected(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) is list:
        return "a non-empty list of numbers"
    text = TYPE_WORDS.get(typing.get_origin(hint) or hint, str(hint))
    if any(isinstance(m, MinLen) for m in metadata):
        return f"{text}, not empty"
    low = next((m for m in metadata if isinstance(m, (Ge, Gt))), None)
    high = next((m for m in metadata if isinstance(m, (Le, Lt))), None)
    if low is not None and high is not None:
        left, right = "[" if isinstance(low, Ge) else "(", "]" if isinstance(high, Le) else ")"
        return f"{text} in {left}{_limit(low)}, {_limit(high)}{right}"
    if low is not None or high is not None:
        bound = low if low is not None else high
        return f"{text} {BOUND_WORDS[type(bound)]} {_limit(bound)}"
    return text


BOUND_WORDS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<"}


def _limit(bound) -> str:
    """The number of a bound, Ge(1) -> '1', Le(4096) -> '4,096'."""
    x = getattr(bound, type(bound).__name__.lower())
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


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
    number = "a whole number" if isinstance(value, int) else "a number" if isinstance(value, numbers.Real) else None
    return f"{text} ({kinds.get(type(value)) or number or type(value).__name__})"


# --- checking values ----------------------------------------------------------------------------------------


def check_values(values: dict, origin: str = "config") -> None:
    """Check every key of ``values`` (a subset of TrainConfig's fields) against its type and range, without
    the rules between fields (the other settings may come from elsewhere). ``origin``: 'flag', 'TrainConfig',
    or a file's path: it is named in the message."""
    say = Namer(origin)
    TrainConfig(say, **values)
    if isinstance(values.get("augment"), dict):
        check_augment(values["augment"], say("augment"))


# Keras' standardize options, which new training settings refuse: cnnlab normalises every image itself with the
# run's input_norm, which evaluation, prediction and export use again; these would change the training batches
# only (rescale=1/255 on top of that normalisation left LeNet-5 at 76% after an epoch, against 98%). A run's
# config.json written before they were refused still reads (its predictions never used them); the feature-wise
# ones, which need statistics a run never fits, were never taken.
NEVER_TAKEN = ("featurewise_center", "featurewise_std_normalization")
NOT_IN_TRAINING = ("rescale", "samplewise_center", "samplewise_std_normalization", *NEVER_TAKEN)
STANDARDIZE_WHY = "cnnlab normalises every image itself, for training, evaluation and prediction alike"


@functools.cache
def augment_settings_model() -> type[BaseModel]:
    """``cnnlab.augment.AugmentConfig``'s fields and types as a strict pydantic model; a bare ``list`` (a range
    [low, high] or a list of shifts) is a non-empty list of numbers."""
    numbers = Annotated[list[float], MinLen(1)]
    fields = {
        key: (_with_lists(hint, numbers), AugmentConfig.__dataclass_fields__[key].default)
        for key, hint in typing.get_type_hints(AugmentConfig).items()
        if key not in NEVER_TAKEN
    }
    return create_model("AugmentSettings", __config__=STRICT, **fields)


def _with_lists(hint, numbers):
    if hint is list:
        return numbers
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.Union[tuple(_with_lists(h, numbers) for h in typing.get_args(hint))]  # noqa: UP007
    return hint


def check_augment(settings: dict, where: str, new: bool = True) -> None:
    """Augmentation settings against ``AugmentConfig``'s fields and types, then Augment's own checks (fill
    mode, ranges), without drawing anything. ``new``: settings for a run to come (flags, files), which may not
    standardize; a saved run's (``new=False``) may."""
    model = augment_settings_model()
    known = [key for key in model.model_fields if key not in NOT_IN_TRAINING]
    unknown = sorted(set(settings) - set(model.model_fields) | {k for k in NOT_IN_TRAINING if new and settings.get(k)})
    if unknown:
        why = f" ({STANDARDIZE_WHY})" if set(unknown) <= set(NOT_IN_TRAINING) else ""
        raise ConfigError(f"{where} has no setting {unknown[0]!r}{why}; known: {', '.join(known)}")
    try:
        model.model_validate(settings)
    except ValidationError as e:
        raise _config_error(e, settings, model, lambda key: f"{where}.{key}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Augment's advice is for training time, not for this check
            Augment(**settings)
    except (ValueError, TypeError) as e:  # Augment's documented refusals of a bad setting
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
