"""Per-model training recipes and named presets, and the one function that merges every source of settings.

Precedence, lowest first: ``TrainConfig``'s defaults < the model's recipe (here) < a named preset
(``--recipe record``, here) < a ``--config`` file < command-line flags. ``cnnlab train NAME`` and
``cnnlab.fit(model, ...)`` without a config both train with the recipe, so that the Python API trains like
the command line. Every value is checked (``config.check_values``) before anything is loaded, and the model's
options against its builder's signature.
"""

from __future__ import annotations

import typing
from pathlib import Path

import torch

from ..augment import LESSON
from ..errors import expect_type
from ..models import create_model, get_model_entry
from ..models.registry import InputSizeError, check_input_size
from .config import (
    FOLDER_EVAL_BATCH_SIZE,
    GIVEN,
    ConfigError,
    Namer,
    TrainConfig,
    check_values,
    load_config_file,
    value_problem,
)

RECIPES: dict[str, dict] = {
    # Chosen by measurement (benchmarks/lenet5_mnist.py): batch 128 with a one-cycle schedule reaches the
    # lesson's accuracy in fewer seconds than its batch 32 at a constant 1e-3; validating a moving average of
    # the weights (Keras' use_ema, momentum 0.99) reaches 98.5% one epoch sooner again. 5 epochs rather than 4:
    # over seeds 1-5 and 42 every run ends >= 98.8% (98.89-99.11%); with 4, seed 4 ended at 98.70%.
    "lenet5": dict(
        dataset="mnist", epochs=5, batch_size=128, lr=4e-3, optimizer="adam", schedule="cosine", warmup=0.05, ema=0.99
    ),
    # The lesson's AlexNet-BN on Dogs vs. Cats: Adam 1e-3, batch 64; bf16 autocast (measured 2.4-3.65x faster
    # than fp32 on CPUs, see benchmarks/alexnet_throughput.py).
    "alexnet_bn": dict(
        epochs=40, batch_size=64, lr=1e-3, optimizer="adam", schedule="cosine", warmup=0.05, precision="bf16"
    ),
    # The 2012 paper: SGD with momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 on plateaus (here at
    # fixed points of a step schedule), batch 128, 90 epochs.
    "alexnet": dict(
        epochs=90,
        batch_size=128,
        lr=0.01,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="step",
        warmup=0.0,
    ),
}


# Named presets, ``--recipe NAME``: settings on top of a model's recipe, each one chosen by measurement
# (benchmarks/README.md). The model's own recipe stays the lesson's. AlexNet-BN on the 2,000-image Dogs vs.
# Cats sample has none yet: no change measured there beat the lesson's recipe at 40 epochs.
PRESETS: dict[str, dict[str, dict]] = {
    # The Dogs & Cats challenge: AlexNet-BN on Kaggle's full training set (20,693 images after the 10% split)
    # inside 90 minutes of a 2-core CPU: the lesson's architecture and 58,327,810 parameters, lr 1e-3 with a
    # cosine schedule, as many epochs as 90 minutes hold on a CPU without AMX (~54 images/s, 6.5 minutes an
    # epoch): 12 (81 minutes in all; 95.30% 10-crop, against 95.17% for 11 epochs in 75). With the lesson's
    # regularisation the full run was still fitting at its end (training 94.8%, validation 94.2%), so this
    # preset regularises less, each change chosen on a 6,000-image subset (3 epochs,
    # 1,000 held-out images, seed 42; benchmarks/README.md): no dropout after the conv blocks (validation after
    # epoch 2: 69.2% against 65.6%) and 0.25 rather than 0.5 in the classifier (72.4%); decoupled weight decay
    # (AdamW 0.05) instead of Keras' L2 in Adam, where the L2 gradient dominates the small ones of the 37M
    # classifier weights (67.1% against 67.2% at epoch 3 alone: kept as the modern default); lr 2e-3 was worse
    # (63.8% after epoch 2). Label smoothing 0.1 and a weight average over ~1.5 epochs (0.998) from the last run.
    "challenge": {
        "alexnet_bn": dict(
            epochs=12,
            optimizer="adamw",
            weight_decay=0.05,
            label_smoothing=0.1,
            ema=0.998,
            model_options=dict(l2=0.0, dropout_conv=0.0, dropout_fc=0.25),
        ),
    },
    # LeNet-5 at the record: the lesson's augmentation for 35 epochs, then 5 on unaugmented images (the
    # distribution it is tested on), label smoothing 0.1 and a slower weight average (its horizon ~2 epochs).
    # 99.30%, 99.33%, 99.33% on MNIST's test set (seeds 42, 1, 2; 1 thread), 99.24% (seed 42, 2 threads); the
    # lesson's augmentation alone for 40 epochs ended at 99.16%, for 60 with the smoothing and the average at 99.20%.
    "record": {
        "lenet5": dict(augment=dict(LESSON), epochs=40, clean_epochs=5, ema=0.999, label_smoothing=0.1),
    },
}


# The validation accuracies whose wall time a run's page gives ("time to accuracy"), by (model, preset), with the
# dataset they were set for; a preset without its own uses its model's. benchmarks/time_to_accuracy.py times them.
ACCURACY_TARGETS: dict[tuple[str, str], tuple[str, tuple[float, ...]]] = {
    ("lenet5", ""): ("mnist", (0.985, 0.99)),  # past the lesson's 98%, and the recipe's ~99%
    ("alexnet_bn", ""): ("folder", (0.80, 0.83, 0.85)),  # the 2,000-image sample: ~82% from scratch, the lesson's 83.5%
    ("alexnet_bn", "challenge"): ("folder", (0.90, 0.9435, 0.96)),  # the full set: 94.35%, the lesson's in 12 epochs
}


def accuracy_targets(config: dict) -> tuple[float, ...]:
    """The targets of a run's settings (config.json's model, recipe and dataset); none on other data, where they
    would mislead (LeNet-5's 98.5% on Dogs vs. Cats or Fashion-MNIST)."""
    model, preset = config.get("model"), config.get("recipe", "")
    dataset, targets = ACCURACY_TARGETS.get((model, preset)) or ACCURACY_TARGETS.get((model, ""), (None, ()))
    return targets if config.get("dataset") == dataset else ()


def preset_settings(model: str, preset: str, origin: str = "--recipe") -> dict:
    """A named preset's settings for ``model``; an unknown name, or one without settings for it, is refused."""
    for_model = sorted(name for name, models in PRESETS.items() if model in models)
    if preset not in PRESETS or model not in PRESETS[preset]:
        have = f"{model}'s recipes: {', '.join(for_model)}" if for_model else f"{model} has no named recipes"
        raise ConfigError(f"{origin} {preset!r} is not a recipe for {model}; {have}")
    return dict(PRESETS[preset][model])


def resolve_config(
    model: str,
    overrides: dict | None = None,
    config_file: dict | None = None,
    file_label: str = "config file",
    given_as: str = "flag",
) -> TrainConfig:
    """TrainConfig's defaults < ``model``'s recipe < a named preset (``recipe``, from the file or a flag) <
    ``config_file`` < ``overrides`` (None: not given), named in messages as ``given_as``: "flag" (``--epochs``)
    or "keyword" (``epochs``, as ``config_for``'s caller wrote it).

    Each source is checked on its own, so that a message names where the bad value came from (``--epochs``
    or ``FILE: "epochs"``); model options and augmentation settings merge key by key (``--rotation-range 10``
    changes one setting of a preset's augmentation; a file's ``"augment": null`` turns it off). A setting
    given that does nothing with the others (``--momentum`` with adam) is refused, naming its source.
    """
    config_file = dict(config_file or {})
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_values(config_file, file_label)
    check_values(flags, given_as)
    # "" is TrainConfig's "not given" (a run's config.json records it so), but a flag given empty is a mistake
    if flags.get("run_name") == "":
        raise ConfigError(f"{Namer(given_as)('run_name')} is empty; give a name, or leave it out for MODEL-DATA-TIME")
    sources = {**{k: file_label for k in config_file}, **{k: given_as for k in flags}}
    preset = flags.get("recipe", config_file.get("recipe", ""))
    preset_values = preset_settings(model, preset, Namer(file_label, sources)("recipe")) if preset else {}
    get_model_entry(model)  # an unknown model is an error here too
    base = {**RECIPES.get(model, {}), **preset_values}
    values = {**base, **config_file, **flags, "model": model}
    values["model_options"] = _merged("model_options", base, config_file, flags) or {}
    values["augment"] = _merged("augment", base, config_file, flags)
    origins = {**{k: f"--recipe {preset}" for k in preset_values}, **sources}
    say = Namer(given_as, origins)  # a setting by its source, the others as the caller writes them (say.option)
    _check_cval(values["augment"], config_file, flags, say)
    _check_preset_weight_decay(preset, preset_values, values, origins)
    if values.get("data"):
        _folder_defaults(values, origins, say)
    cfg = TrainConfig.from_dict(values, "TrainConfig", origins)
    _check_clean_epochs(cfg, say)
    check_model_options(model, config_file.get("model_options", {}), file_label)
    check_model_options(model, flags.get("model_options", {}), given_as)
    check_model_options(model, values["model_options"], given_as)  # together: the builder's own checks
    return cfg


def _check_preset_weight_decay(preset: str, preset_values: dict, values: dict, origins: dict) -> None:
    """A preset's weight decay belongs to its optimizer: AdamW's decoupled 0.05 (the challenge preset) would
    be 125 times the lesson's L2 as Adam's or SGD's coupled decay. Another optimizer from a file or a flag
    needs its own weight decay, given beside it."""
    if "weight_decay" not in preset_values or "optimizer" not in preset_values:
        return
    if values["optimizer"] != preset_values["optimizer"] and origins["weight_decay"] == f"--recipe {preset}":
        where = origins["optimizer"]
        beside = Namer(where)("weight_decay") if where in GIVEN else f'"weight_decay" in {where}'
        raise ConfigError(
            f"{Namer(where)('optimizer')} is {values['optimizer']!r}, but --recipe {preset}'s weight "
            f"decay {preset_values['weight_decay']} is meant for {preset_values['optimizer']!r}: give {beside} too"
        )


def _check_cval(augment: dict | None, config_file: dict, flags: dict, say: Namer) -> None:
    """A cval given to a new run that its fill mode ignores (Keras uses it with fill_mode 'constant' only) is
    refused: the record would claim a setting the run never used. A recorded run that has one still reads."""
    augment = augment or {}
    given = any("cval" in (s.get("augment") or {}) for s in (flags, config_file))
    fill_mode = augment.get("fill_mode", "nearest")
    if given and augment.get("cval", 0) != 0 and fill_mode != "constant":
        raise ConfigError(
            f"{say('augment')}: cval {augment['cval']} is the value outside the image with fill_mode 'constant', but "
            f"fill_mode is {fill_mode!r}: add {say.option('fill_mode', 'constant')}, or leave {say.option('cval')} out"
        )


def _check_clean_epochs(cfg: TrainConfig, say: Namer) -> None:
    """Clean epochs end augmented training: they need the augmentation settings (fit's Python callers pass
    an ``augment`` transform of their own) and some augmented epochs before them."""
    name = say("clean_epochs")
    if cfg.clean_epochs and not cfg.augment:
        raise ConfigError(f"{name} ends augmented training with unaugmented epochs: add {say.option('augment')}")
    if cfg.clean_epochs and cfg.clean_epochs >= cfg.epochs:
        raise ConfigError(
            f"{name} is {cfg.clean_epochs}: that leaves none of the {cfg.epochs} epochs augmented "
            f"(give fewer clean epochs, or more {say.option('epochs')})"
        )


def _folder_defaults(values: dict, origins: dict, say: Namer) -> None:
    """An image folder is dataset 'folder', and with no --val-dir it holds out --val-split of its images
    (0.1 unless given): there is no separate test set to validate on, and config.json says what is used."""
    if "dataset" not in origins:  # a model's recipe names its usual dataset; a folder replaces it
        values["dataset"] = "folder"
    values.setdefault("eval_batch_size", FOLDER_EVAL_BATCH_SIZE)
    if values.get("val_dir"):
        return
    if "val_split" in origins and values["val_split"] == 0:
        raise ConfigError(
            f"{say('val_split')} is 0, but an image folder has no test set to validate on: "
            f"give a fraction in (0, 1), or a folder of validation images as {say.option('val_dir')}"
        )
    values.setdefault("val_split", 0.1)


def new_run_settings(
    model: str | None, flags: dict, config_path: str | None = None, compare_without: bool = False
) -> TrainConfig:
    """``cnnlab train``'s settings: the model (named, or in the --config file), then ``resolve_config``; the
    model against the data's input size, all checked before any data is loaded."""
    file_values = load_config_file(config_path) if config_path else {}
    named = file_values.get("model")
    if model and named and model != named:
        raise ConfigError(f'{config_path}: "model" is {named!r}, but the command line names {model!r}; give one')
    model = model or named
    if not model:
        raise ConfigError("name a model to train (see 'cnnlab models'), or --resume RUN_DIR")
    cfg = resolve_config(model, flags, file_values, file_label=config_path or "config file")
    if compare_without and not cfg.augment:
        raise ConfigError("--compare-without compares training with and without augmentation: add --augment")
    for data in (cfg.data, cfg.val_dir):  # before the sizes, and before --overwrite moves a run aside
        if data and not Path(data).exists():  # a folder, or a file that a kind of data reads
            raise ConfigError(f"{data}: no such file or folder")
    check_fits_data(cfg)
    return cfg


def config_for(model, **overrides) -> TrainConfig:
    """The recipe of a model (a name, or a model made by ``create_model``), with ``overrides`` on top:
    ``cnnlab.fit(model, train, val, config_for(model, epochs=2))``. A model without a name gets the defaults."""
    expect_type(model, (str, torch.nn.Module), "config_for(): model", "a model name or a model")
    name = model if isinstance(model, str) else getattr(model, "cnnlab_name", None)
    return TrainConfig(**overrides) if name is None else resolve_config(name, overrides, given_as="keyword")


def _merged(key: str, base: dict, config_file: dict, flags: dict) -> dict | None:
    """The dicts under ``key`` merged key by key (recipe/preset < file < flags); an explicit None turns it off."""
    merged = base.get(key)
    for source in (config_file, flags):
        if key in source:
            given = source[key]
            merged = None if given is None else {**(merged or {}), **given}
    return merged


def check_model_options(model: str, options: dict, origin: str) -> None:
    """Model options against the builder's keyword parameters: known names, annotated types, then a build on
    the meta device (no memory, no time), so the builder's own checks run before any data is loaded."""
    if not options:
        return
    entry = get_model_entry(model)
    known = entry.options()
    name = Namer(origin)("model_options")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{name}: model {model!r} has no option {', '.join(unknown)}; its options: "
            + ", ".join(f"{k}={v!r}" for k, v in known.items())
        )
    hints = typing.get_type_hints(entry.builder)
    for key, value in options.items():
        if key in hints and (wrong := value_problem(value, hints[key])):
            raise ConfigError(f"{name} {key} {wrong}")
        if key in ("num_classes", "in_chans", "img_size") and value < 1:
            raise ConfigError(f"{name} {key} is {value}; expected a whole number >= 1")
    try:
        with torch.device("meta"):
            create_model(model, **options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{name}: {model} refuses these options ({e})") from None


def check_fits_data(cfg: TrainConfig) -> None:
    """Refuse, before any data is loaded, a model that cannot take the data's input size (built on the meta
    device with the options training will use), naming the sizes it takes."""
    size = (3, cfg.crop, cfg.crop) if cfg.data else (1, 28, 28)  # an image folder's RGB crop, or the IDX sets' grey
    options = dict(cfg.model_options)
    if "in_chans" in get_model_entry(cfg.model).options():
        options.setdefault("in_chans", size[0])  # as training does: what the data says unless told otherwise
    with torch.device("meta"):
        model = create_model(cfg.model, **options)
    try:
        check_input_size(model, size)
    except InputSizeError as e:
        source = f"the training crop (--crop {cfg.crop})" if cfg.data else f"{cfg.dataset}'s 28x28x1 images"
        raise InputSizeError(f"{e}; its input here is {source}") from None


def check_classes(options: dict, classes) -> None:
    """A model option ``num_classes`` must match the data's classes: fewer outputs than labels fail deep in the
    loss, more would train outputs that no label ever asks for."""
    if "num_classes" in options and options["num_classes"] != len(classes):
        shown = ", ".join(map(str, classes[:5])) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(
            f"--option num_classes={options['num_classes']}, but the data has {len(classes)} classes ({shown}); "
            "leave the option out and the model takes the data's"
        )
