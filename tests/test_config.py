"""The typed configuration: every value from a flag or a config file is checked before anything is loaded.

The property-based tests feed random JSON values for every key and check that the result is either a
configuration that the code which consumes it accepts (optimizer, schedule, seeds, augmentation, model, a
resume's JSON round trip) or a ConfigError whose one-line message names the key and that the command line
turns into exit 2, never a traceback."""

import json
import math
import os
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cnnlab import create_model, fit
from cnnlab.augment import Augment, AugmentConfig
from cnnlab.cli import user_error_message
from cnnlab.models import list_models
from cnnlab.train.config import (
    NOT_IN_TRAINING,
    SETTINGS,
    ConfigError,
    TrainConfig,
    check_values,
    flag_name,
    load_config_file,
)
from cnnlab.train.loop import lr_at, make_optimizer
from cnnlab.train.recipes import PRESETS, RECIPES, config_for, resolve_config

ISSUE_CASES = {  # issue 11: each was a traceback or silently taken
    "epochs": ("2", 'config.json: "epochs" is "2" (text); expected a whole number >= 1'),
    "lr": ("0.001", '"lr" is "0.001" (text); expected a number > 0'),
    "batch_size": (None, '"batch_size" is null; expected a whole number >= 1'),
    "augment": ("yes", '"augment" is "yes" (text); expected an object {...} or null'),
    "model_options": ([1, 2], '"model_options" is [1, 2] (a list); expected an object {...}'),
    "eval_batch_size": (0, '"eval_batch_size" is 0; expected a whole number >= 1'),
    "channels_last": ("no", '"channels_last" is "no" (text); expected true or false'),
}


@pytest.mark.parametrize("key", ISSUE_CASES)
def test_the_issues_config_values_are_refused_naming_key_value_and_expectation(tmp_path, key):
    value, message = ISSUE_CASES[key]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_whole_numbers_and_booleans_are_strict():
    for values in ({"epochs": 1.5}, {"epochs": True}, {"channels_last": 1}, {"channels_last": "false"}):
        with pytest.raises(ConfigError, match=next(iter(values))):
            check_values(values, "c.json")
    check_values({"epochs": 2, "lr": 1, "channels_last": False, "augment": None}, "c.json")  # an int is a number


def test_augmentation_settings_are_checked_against_augment_config():
    with pytest.raises(ConfigError, match="no setting 'rotation'"):
        check_values({"augment": {"rotation": 30}}, "flag")
    with pytest.raises(ConfigError, match=r"augment.horizontal_flip is \"yes\""):
        check_values({"augment": {"horizontal_flip": "yes"}}, "flag")
    with pytest.raises(ConfigError, match="fill_mode must be one of"):
        check_values({"augment": {"fill_mode": "mirror"}}, "flag")
    check_values({"augment": {"rotation_range": 30, "zoom_range": [0.8, 1.2]}}, "flag")


def test_devices_that_do_not_exist_here_name_those_that_do():
    for name in ("tpu", "cuda:x", *(() if torch.cuda.is_available() else ("cuda", "cuda:0"))):
        with pytest.raises(ConfigError, match="expected a device that exists here: auto, cpu"):
            check_values({"device": name}, "flag")


def test_flags_and_files_are_named_as_the_user_wrote_them(tmp_path):
    with pytest.raises(ConfigError, match=r"^--threads is -2; expected a whole number in \[0, 4,096\]$"):
        resolve_config("lenet5", {"threads": -2})
    with pytest.raises(ConfigError, match=r'^--name is "\.\./x"'):
        resolve_config("lenet5", {"run_name": "../x"})
    with pytest.raises(ConfigError, match=r'^f\.json: "crop" is 300; expected at most image_size'):
        resolve_config("lenet5", {}, {"crop": 300, "data": "cats"}, file_label="f.json")
    with pytest.raises(ConfigError, match=r'^f\.json: "crop" is for image folders; it does nothing without --data'):
        resolve_config("lenet5", {}, {"crop": 300}, file_label="f.json")


def test_precedence_defaults_recipe_file_flags():
    cfg = resolve_config("lenet5", {"lr": 0.5}, {"lr": 0.1, "epochs": 9, "model_options": {"init": "torch"}})
    assert (cfg.lr, cfg.epochs, cfg.ema, cfg.warmup) == (0.5, 9, 0.99, 0.05)  # flag, file, recipe, recipe
    assert (TrainConfig().ema, TrainConfig().warmup) != (0.99, 0.05)  # the recipe is above the defaults
    merged = resolve_config("lenet5", {"model_options": {"img_size": 32}}, {"model_options": {"init": "torch"}})
    assert merged.model_options == {"init": "torch", "img_size": 32}  # options merge key by key


def test_a_presets_model_options_merge_with_the_flags_key_by_key():
    preset = resolve_config("alexnet_bn", {"recipe": "challenge"}).model_options
    assert preset, "the challenge preset sets model options (its regularisation)"
    key = sorted(preset)[0]
    merged = resolve_config("alexnet_bn", {"recipe": "challenge", "model_options": {key: 0.125}}).model_options
    assert merged == {**preset, key: 0.125}  # the flag's value wins; the preset's other options stay


def test_a_named_recipe_sits_between_the_models_recipe_and_files_and_flags():
    record = resolve_config("lenet5", {"recipe": "record"})
    assert (record.recipe, record.epochs, record.ema) == ("record", 40, 0.999)  # the preset's, over the recipe's
    assert record.batch_size == RECIPES["lenet5"]["batch_size"]  # what the preset leaves is the model's recipe
    flagged = resolve_config("lenet5", {"recipe": "record", "epochs": 30}, {"epochs": 20})
    assert flagged.epochs == 30  # flags over files over the preset
    assert resolve_config("lenet5", None, {"recipe": "record", "epochs": 20}).epochs == 20


def test_a_recipe_name_that_the_model_lacks_is_refused_naming_those_it_has():
    with pytest.raises(ConfigError, match=r"--recipe 'small-data' is not a recipe for lenet5; lenet5's recipes: rec"):
        resolve_config("lenet5", {"recipe": "small-data"})
    with pytest.raises(ConfigError, match=r'^run.json: "recipe" \'small-data\' is not a recipe for lenet5'):
        resolve_config("lenet5", None, {"recipe": "small-data"}, "run.json")  # named where it was written
    with pytest.raises(ConfigError, match="'record' is not a recipe for alexnet_bn; alexnet_bn's recipes: challenge"):
        resolve_config("alexnet_bn", {"recipe": "record"})
    with pytest.raises(ConfigError, match="alexnet has no named recipes"):
        resolve_config("alexnet", {"recipe": "record"})


def test_the_challenge_preset_changes_only_its_own_settings_and_keeps_the_lessons_network():
    lesson, challenge = resolve_config("alexnet_bn"), resolve_config("alexnet_bn", {"recipe": "challenge"})
    changed = {k for k, v in challenge.record().items() if lesson.record().get(k) != v}
    assert changed == {"recipe", *PRESETS["challenge"]["alexnet_bn"]}  # nothing else moves with it
    model = create_model("alexnet_bn", **challenge.model_options)
    weights = sum(p.numel() for p in model.parameters())
    statistics = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert (weights + statistics, statistics) == (58_327_810, 19_136)  # the lesson's AlexNet-BN, as Keras counts


def test_another_optimizer_needs_its_own_weight_decay_beside_the_challenge_preset():
    # AdamW's decoupled 0.05 as Adam's coupled decay would be 125 times the lesson's L2: refused, not kept
    with pytest.raises(ConfigError, match=r"^--optimizer is 'adam', but --recipe challenge's weight decay 0\.05 "):
        resolve_config("alexnet_bn", {"recipe": "challenge", "optimizer": "adam"})
    chosen = resolve_config("alexnet_bn", {"recipe": "challenge", "optimizer": "adam", "weight_decay": 0.0})
    assert (chosen.optimizer, chosen.weight_decay) == ("adam", 0.0)
    with pytest.raises(ConfigError, match=r'^c\.json: "optimizer" is \'sgd\'.*give "weight_decay" in c\.json too$'):
        resolve_config("alexnet_bn", {}, {"recipe": "challenge", "optimizer": "sgd"}, file_label="c.json")


def test_a_presets_augmentation_changes_key_by_key_and_a_file_can_turn_it_off():
    record = resolve_config("lenet5", {"recipe": "record"}).augment
    tweaked = resolve_config("lenet5", {"recipe": "record", "augment": {"rotation_range": 10.0}}).augment
    assert tweaked == {**record, "rotation_range": 10.0} and record["rotation_range"] == 30
    off = resolve_config("lenet5", None, {"recipe": "record", "augment": None, "clean_epochs": 0})
    assert off.augment is None


def test_clean_epochs_need_augmented_epochs_before_them_and_say_where_they_came_from():
    with pytest.raises(ConfigError, match=r'^--recipe record: "clean_epochs" is 5: that leaves none of the 5 epochs'):
        resolve_config("lenet5", {"recipe": "record", "epochs": 5})
    with pytest.raises(ConfigError, match=r'^run.json: "clean_epochs" ends augmented training with unaugmented epochs'):
        resolve_config("lenet5", None, {"clean_epochs": 2}, "run.json")
    assert resolve_config("lenet5", {"recipe": "record", "epochs": 6}).clean_epochs == 5


def test_a_named_recipe_changes_exactly_its_own_settings_and_trains():
    for preset, models in PRESETS.items():
        for model, values in models.items():
            plain, named = resolve_config(model), resolve_config(model, {"recipe": preset})
            changed = {k for k in TrainConfig.model_fields if getattr(plain, k) != getattr(named, k)}
            assert changed == {k for k, v in values.items() if getattr(plain, k) != v} | {"recipe"}
            assert_usable(named)


def test_every_recipe_is_a_valid_configuration_of_a_registered_model():
    assert set(RECIPES) <= set(list_models())
    for name in list_models():
        cfg = resolve_config(name)
        for key, value in RECIPES.get(name, {}).items():
            assert getattr(cfg, key) == value


def test_fit_without_a_config_trains_with_the_models_recipe(synthetic_dataset):
    train, val = synthetic_dataset
    model = create_model("lenet5")
    assert config_for(model) == resolve_config("lenet5")
    history = fit(model, train.subset(range(256)), val.subset(range(128)), callbacks=[])
    assert len(history["loss"]) == RECIPES["lenet5"]["epochs"] != TrainConfig().epochs


# --- each setting declared once: its flag, its checks, its record ---------------------------------------------


def test_every_setting_has_a_flag_and_every_settings_flag_a_setting():
    train = build_train_parser()
    dests = {a.dest for a in train._actions}
    assert set(TrainConfig.model_fields) <= dests  # MODEL positional, --augment, --option, and one flag each
    settings_group = next(g for g in train._action_groups if g.title.startswith("settings"))
    assert {a.dest for a in settings_group._group_actions} <= set(TrainConfig.model_fields)
    augment_flags = {a.dest for a in train._actions if a.container.title and "augmentation" in a.container.title}
    assert augment_flags == (set(AugmentConfig.__dataclass_fields__) - set(NOT_IN_TRAINING)) | {"augment"}


def build_train_parser():
    from cnnlab.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def other_value(key: str):
    """A valid value for ``key`` that is not its default, chosen from the declaration alone."""
    field, default = TrainConfig.model_fields[key], TrainConfig.model_fields[key].default
    if typing.get_origin(field.annotation) is typing.Literal:
        choices = SETTINGS[key].choices or typing.get_args(field.annotation)
        return next(c for c in choices if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return 0.5 if default in (0.0, 0.9) else default * 2 if default > 1 else default / 2
    return {"recipe": "record", "device": "cpu"}.get(key, "somewhere")


COMPANIONS = {"FOLDER": ["--data", "cats"], "SGD": ["--optimizer", "sgd"]}


@pytest.mark.parametrize("key", sorted(set(TrainConfig.model_fields) - {"model", "model_options", "augment"}))
def test_each_flag_sets_its_setting(key):
    """Parse ``--flag VALUE`` with the command line's parser, resolve it as ``cnnlab train`` does: the setting
    has the value, and config.json records it (flag name, type and destination all from the declaration)."""
    from cnnlab.cli._settings import given_settings
    from cnnlab.train import config

    value = other_value(key)
    flag = flag_name(key)
    words = [flag] if value is True or flag.startswith("--no-") else [flag.replace("--", "--no-", 1)]
    if not isinstance(value, bool):
        words = [flag, str(value)]
    needs = SETTINGS[key].needs
    companions = next((COMPANIONS[name] for name in COMPANIONS if needs is getattr(config, name)), [])
    companions += ["--augment"] if key == "clean_epochs" else []
    args = build_train_parser().parse_args(["lenet5", *words, *companions])
    cfg = resolve_config("lenet5", given_settings(args))
    assert getattr(cfg, key) == value and cfg.record()[key] == value


def test_a_bad_value_names_its_source_flag_file_or_preset(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match=r"^--epochs is 0; expected a whole number >= 1$"):
        resolve_config("lenet5", {"epochs": 0})
    (tmp_path / "f.json").write_text('{"epochs": 0}')
    with pytest.raises(ConfigError, match=r'^.*f\.json: "epochs" is 0; expected a whole number >= 1$'):
        load_config_file(tmp_path / "f.json")
    monkeypatch.setitem(PRESETS, "broken", {"lenet5": {"epochs": 0}})
    with pytest.raises(ConfigError, match=r'^--recipe broken: "epochs" is 0; expected a whole number >= 1$'):
        resolve_config("lenet5", {"recipe": "broken"})
    monkeypatch.setitem(PRESETS, "idle", {"lenet5": {"momentum": 0.5}})
    with pytest.raises(ConfigError, match=r'^--recipe idle: "momentum" is for --optimizer sgd; it does nothing'):
        resolve_config("lenet5", {"recipe": "idle"})


def test_config_json_records_what_the_run_uses_and_reads_back_the_same():
    adam = resolve_config("lenet5")
    assert not {"momentum", "nesterov", "image_size", "crop", "cache_dir", "val_dir"} & set(adam.record())
    assert TrainConfig.from_dict(json.loads(json.dumps(adam.record()))) == adam  # the rest are the defaults
    folder = resolve_config("alexnet_bn", {"data": "cats", "val_dir": "val", "optimizer": "sgd"})
    assert {"momentum", "crop", "val_dir"} <= set(folder.record()) and "val_split" not in folder.record()
    assert "data_dir" not in folder.record()
    split = resolve_config("alexnet_bn", {"data": "cats"})
    assert split.val_split == split.record()["val_split"] == 0.1  # what the folder holds out, not 0


def test_a_value_equal_to_the_default_in_an_old_config_json_is_taken():
    """Runs written before the record omitted unused settings keep every key: --config RUN/config.json works."""
    old = {**TrainConfig().to_dict(), "model": "lenet5"}
    assert resolve_config("lenet5", None, old, "old/config.json").momentum == 0.9
    with pytest.raises(ConfigError, match=r'^old/config.json: "momentum" is for --optimizer sgd'):
        resolve_config("lenet5", None, {**old, "momentum": 0.5}, "old/config.json")


def test_keras_standardize_options_are_refused_in_training_saying_why():
    """cnnlab normalises inputs itself; rescale=1/255 on top of it trained LeNet-5 to 76% where 98% is usual."""
    for key, value in (("featurewise_center", True), ("rescale", 1 / 255), ("samplewise_center", True)):
        with pytest.raises(ConfigError, match=f"no setting '{key}' .cnnlab normalises every image itself"):
            check_values({"augment": {key: value}}, "c.json")
    # a run's config.json from before still reads: predict, evaluate and report never used them
    saved = {**TrainConfig().to_dict(), "model": "lenet5", "augment": {"rotation_range": 10, "rescale": 1 / 255}}
    assert TrainConfig.from_dict(saved, "run/config.json").augment["rescale"] == 1 / 255


# --- property-based: random JSON for every key --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
NUMBERS = st.integers(-3, 300) | st.floats(-1.5, 2.5) | st.sampled_from([0, 1, 2**32, 10**6, 1e-3])
AUGMENT = st.dictionaries(
    st.sampled_from([*AugmentConfig.__dataclass_fields__, "rotation"]),
    NUMBERS | st.booleans() | st.lists(NUMBERS, max_size=3) | st.sampled_from(["nearest", "wrap", "radians", "x"]),
    max_size=4,
)
OPTIONS = st.dictionaries(st.sampled_from(["num_classes", "in_chans", "img_size", "init", "bogus"]), JSON | NUMBERS)


FIELDS = TrainConfig.model_fields


def plausible(key: str):
    """Values near valid ones for ``key`` (so that many examples are valid), and any JSON value."""
    default = FIELDS[key].default
    near = [st.just(default)]
    if isinstance(default, bool):
        near.append(st.booleans())
    elif isinstance(default, (int, float)):
        near.append(NUMBERS)
    if typing.get_origin(FIELDS[key].annotation) is typing.Literal:
        near.append(st.sampled_from(typing.get_args(FIELDS[key].annotation)))
    if key == "augment":
        near.append(AUGMENT)
    if key == "model_options":
        near.append(OPTIONS)
    if key == "device":
        near.append(st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps", "tpu"]))
    return st.one_of(*near, JSON)


CONFIGS = st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=6, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: plausible(k) for k in keys})
)


def assert_usable(cfg: TrainConfig) -> None:
    """What the code that consumes a configuration does with it, on a small scale."""
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), allow_nan=False)), "config.json")
    assert again == cfg  # a resume reads back exactly what was accepted
    make_optimizer(torch.nn.Linear(2, 2), cfg)
    for step in (0, 5, 99):
        assert math.isfinite(lr_at(step, 100, cfg)) and lr_at(step, 100, cfg) >= 0
    torch.Generator().manual_seed(cfg.seed)
    np.random.RandomState(cfg.seed)
    with torch.device("meta"):
        create_model(cfg.model, **cfg.model_options)
    if cfg.augment is not None:
        aug = Augment(**cfg.augment)
        x = torch.rand(2, 3, 8, 10) * 255
        if cfg.augment.get("featurewise_center") or cfg.augment.get("featurewise_std_normalization"):
            aug.fit(x)
        assert aug(x, generator=torch.Generator().manual_seed(0)).shape == x.shape


EXAMPLES = int(os.environ.get("CNNLAB_HYPOTHESIS_EXAMPLES", 400))  # each; seeded (derandomize)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_one_random_value_for_any_key_is_valid_or_one_message_naming_that_key(key, data):
    value = data.draw(plausible(key))
    try:
        cfg = resolve_config("lenet5", {}, {key: value}, file_label="c.json")
    except ConfigError as e:
        message = user_error_message(e)
        assert message is not None and "\n" not in message and key in message, (key, value, message)
        event("refused: ConfigError naming the key")
        return
    event("valid: consumers accept it")
    assert_usable(cfg)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(values=CONFIGS)
def test_random_config_files_are_valid_or_one_message_naming_a_key(values):
    try:
        cfg = resolve_config("lenet5", {}, values, file_label="c.json")
    except ConfigError as e:
        message = user_error_message(e)
        assert message is not None and "\n" not in message, (values, message)
        assert any(k in message for k in values), (values, message)
        event("refused: ConfigError naming a key")
        return
    event("valid: consumers accept it" + (" (with augmentation)" if cfg.augment else ""))
    assert_usable(cfg)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(augment=AUGMENT, options=OPTIONS)
def test_random_augmentation_and_model_options_are_valid_or_one_message(augment, options):
    values = {"augment": augment, "model_options": options}
    try:
        cfg = resolve_config("lenet5", {}, values, file_label="c.json")
    except ConfigError as e:
        message = user_error_message(e)
        assert message is not None and "\n" not in message, (values, message)
        assert "augment" in message or "model_options" in message, (values, message)
        event("refused: ConfigError naming augment or model_options")
        return
    event("valid: consumers accept it")
    assert_usable(cfg)


def test_an_empty_name_is_refused_not_replaced_by_the_default():
    with pytest.raises(ConfigError, match="--name is empty"):
        resolve_config("lenet5", {"run_name": ""})


def test_cval_without_constant_fill_is_refused_naming_both():
    """Keras uses cval only with fill_mode 'constant'; a run that recorded a cval it never used would mislead."""
    with pytest.raises(ConfigError, match="cval 3.0 .* fill_mode is 'nearest': add --fill-mode constant"):
        resolve_config("lenet5", {"augment": {"rotation_range": 10, "cval": 3.0}})
    taken = resolve_config("lenet5", {"augment": {"rotation_range": 10, "cval": 3.0, "fill_mode": "constant"}})
    assert taken.augment["cval"] == 3.0
    keras_default = resolve_config("lenet5", {"augment": {"rotation_range": 10, "cval": 0.0}})
    assert keras_default.augment["cval"] == 0.0
    # a run recorded before the rule still reads (resume, evaluate, predict)
    recorded = TrainConfig.from_dict({"model": "lenet5", "augment": {"rotation_range": 10, "cval": 3.0}}, "config.json")
    assert recorded.augment["cval"] == 3.0


def test_numpy_numbers_are_numbers_as_in_keras():
    """np.int64(2) (y.max() + 1, say) was 'np.int64(2) (a number); expected a whole number'; a numpy bool or
    float is its Python value too, and a numpy text is still not a number."""
    cfg = TrainConfig(epochs=np.int64(2), batch_size=np.int32(32), lr=np.float32(0.5), nesterov=np.bool_(False))
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.nesterov) == (2, 32, 0.5, False)
    assert type(cfg.epochs) is int and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=np.str_("2"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": "2"}, r'^epochs is "2" \(text\); expected a whole number >= 1$'),
        ({"run_name": ""}, r"^run_name is empty"),
        ({"momentum": 0.5}, r"^momentum is for optimizer='sgd'; it does nothing with adam$"),
        ({"crop": 200}, r"^crop is for image folders; it does nothing without data$"),
        ({"schedule": "step", "final_lr": 0.1}, r"^final_lr is where .*; it does nothing with schedule='step'$"),
        ({"clean_epochs": 2}, r"^clean_epochs ends augmented training with unaugmented epochs: add augment$"),
        ({"augment": {"cval": 3.0}}, r"^augment: cval 3.0 .*: add fill_mode='constant', or leave cval out$"),
        ({"data": "cats", "val_split": 0.0}, r"^val_split is 0, .* or a folder of validation images as val_dir$"),
        ({"model_options": {"dropout": 2}}, r"^model_options: model 'alexnet_bn' has no option dropout"),
        ({"recipe": "challenge", "optimizer": "adam"}, r"^optimizer is 'adam', .* give weight_decay too$"),
    ],
)
def test_config_for_names_the_keyword_its_caller_wrote_not_a_flag(overrides, message):
    """config_for(model, epochs="2") said '--epochs is "2"': a flag the Python caller never typed (the command
    line's messages, '--epochs is ...', are the tests above). The settings a message points to are Python's too:
    momentum 'is for --optimizer sgd', cval wanted '--fill-mode constant', clean_epochs '--augment'."""
    with pytest.raises(ConfigError, match=message):
        config_for("alexnet_bn", **overrides)


def test_assignment_converts_and_checks_a_value_as_construction_does():
    """cfg.epochs = np.int64(3) kept the numpy value (validate() passed it, config.json could not hold it), and
    cfg.epochs = "3" waited for fit to be refused."""
    cfg = TrainConfig(epochs=1)
    cfg.epochs, cfg.lr = np.int64(3), np.float32(0.5)
    assert (type(cfg.epochs), type(cfg.lr)) == (int, float) and cfg == TrainConfig(epochs=3, lr=0.5)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.record()))) == cfg
    with pytest.raises(ConfigError, match=r'^epochs is "3" \(text\); expected a whole number >= 1$'):
        cfg.epochs = "3"
    with pytest.raises(ConfigError, match=r"^unknown config key\(s\): epochz \(did you mean epochs\?\)$"):
        cfg.epochz = 3
    assert cfg.epochs == 3


def test_a_folder_setting_takes_a_path_and_a_value_of_another_type_is_named_by_its_type(tmp_path):
    """pathlib is how Python names a folder: TrainConfig(data_dir=Path(...)) was refused as 'PosixPath(...) (a
    number)', a type the value is not; it is taken as its text, which config.json holds."""
    cfg = TrainConfig(data_dir=tmp_path / "mnist")
    cfg.cache_dir = tmp_path / "cache"
    assert (cfg.data_dir, cfg.cache_dir) == (str(tmp_path / "mnist"), str(tmp_path / "cache"))
    assert json.loads(json.dumps(cfg.record()))["data_dir"] == str(tmp_path / "mnist")
    with pytest.raises(ConfigError, match=r"^lr is array\(\[1\., 2\.\]\) \(ndarray\); expected a number > 0$"):
        TrainConfig(lr=np.array([1.0, 2.0]))
    with pytest.raises(ConfigError, match=r"^model is \w+Path\('lenet5'\) \(\w+Path\); expected text$"):
        TrainConfig(model=Path("lenet5"))  # a Path for a setting that is no folder is a slip, named
