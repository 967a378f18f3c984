"""cnnlab.augment against real Keras and against SciPy.

"Same as Keras" comes from fixtures that real Keras wrote (tests/fixtures/keras_augment, made by
scripts/make_keras_fixtures.py with Keras 3's ImageDataGenerator; reading them needs no TensorFlow): for every
option, fill mode and test image, cnnlab's output for Keras' exact transform parameters must be within 0.01 of
Keras' output, and cnnlab's random parameters must have the distributions of Keras' draws. The resampler's
numerics are checked against SciPy's ``ndimage.affine_transform`` itself, on random matrices.

Tolerance: the fixture images are 0..255. In float64 cnnlab agrees with Keras to ~2e-5 (Keras' own float32
steps); in float32, the training dtype, sample coordinates carry ~1e-5 px of rounding, which moves a value at a
sharp 0-to-255 edge by ~0.003. Whole-pixel shifts, flips and the constant fill's edge stay exact in float32 (the
edge test is made in pixel units), and brightness, which floors to 8 bits, computes its geometry in float64.
"""

import numpy as np
import pytest
import torch
from keras_fixtures import cnnlab_params, compare_draws, meta, run_case, to_nchw, transforms
from scipy import ndimage

from cnnlab.augment import Augment, affine_sample, preview_grid

CASES = [(c["name"], fill) for c in meta()["cases"] for fill in c["fills"]]
IMAGES = list(meta()["images"])


def case(name):
    return next(c for c in meta()["cases"] if c["name"] == name)


# --- equal to real Keras -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fill", CASES, ids=[f"{n} [{f}]" for n, f in CASES])
def test_every_option_and_fill_mode_equals_real_keras(name, fill):
    for image in IMAGES:
        keras_out, ours, _ = run_case(case(name), fill, image, torch.float32)
        assert ours.shape == keras_out.shape
        assert np.abs(ours - keras_out).max() <= 0.01, (image, np.abs(ours - keras_out).max())
        keras_out, ours64, _ = run_case(case(name), fill, image, torch.float64)
        assert np.abs(ours64 - keras_out).max() <= 1e-4, (image, "float64")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_option_equals_real_keras_on_cuda():
    for name, fill in CASES:
        for image in IMAGES:
            keras_out, ours, _ = run_case(case(name), fill, image, torch.float32, "cuda")
            assert np.abs(ours - keras_out).max() <= 0.01, (name, fill, image)


@pytest.mark.parametrize("name", ["samplewise std only", "featurewise std only"])
def test_std_normalization_turns_centring_on_with_a_warning_as_keras_does(name):
    c = case(name)
    assert c["keras_warnings"], "Keras warned when the fixture was made"
    with pytest.warns(UserWarning, match="std_normalization turns .*_center on"):
        aug = Augment(**c["settings"])
    kind = name.split()[0]
    assert getattr(aug.config, f"{kind}_center")


@pytest.mark.parametrize("image", IMAGES)
def test_fit_finds_keras_featurewise_statistics(image):
    arrays = transforms()
    for c in meta()["cases"]:
        if not (c["settings"].get("featurewise_center") or c["settings"].get("featurewise_std_normalization")):
            continue
        fill = c["fills"][0]
        _, _, aug = run_case(c, fill, image)
        mean = arrays[f"fit_mean/{c['name']}/{fill}/{image}"].reshape(-1)
        assert np.allclose(aug.mean.reshape(-1).numpy(), mean, rtol=1e-5, atol=1e-6), c["name"]
        std = arrays.get(f"fit_std/{c['name']}/{fill}/{image}")
        if std is not None:
            assert np.allclose(aug.std.reshape(-1).numpy(), std.reshape(-1), rtol=1e-5, atol=1e-6), c["name"]


# --- random parameters distributed as Keras draws them -----------------------------------------------------
RANDOM = [(r["name"], key) for r in meta()["random"] for key in r["keys"]]


@pytest.mark.parametrize("name, key", RANDOM, ids=[f"{n}: {k}" for n, k in RANDOM])
def test_random_parameters_are_distributed_as_keras_draws_them(name, key):
    result = compare_draws(name, key)
    keras, ours = result["keras"], result["ours"]
    if result["values"] is not None:  # whole-pixel shifts, listed shifts, flips: the same values, as often
        assert np.allclose(np.unique(ours), result["values"], atol=1e-5)  # fractions of sizes: float32
    else:
        spread = keras.max() - keras.min()
        assert keras.min() - 0.01 * spread <= ours.min() and ours.max() <= keras.max() + 0.01 * spread
    assert result["pvalue"] > 1e-4, result["counts"] if "counts" in result else result["statistic"]


def test_integer_shift_ranges_are_whole_pixels_and_floats_are_ranges():
    g = torch.Generator().manual_seed(0)
    p = Augment(width_shift_range=3, height_shift_range=1).random_params(2000, 40, 80, g)
    assert set(p["ty"].tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0} and set(p["tx"].tolist()) == {0.0}
    p = Augment(width_shift_range=3.0, height_shift_range=0.25).random_params(2000, 40, 80, g)
    assert len(set(p["ty"].tolist())) > 1000 and 2.9 < p["ty"].abs().max() <= 3  # pixels, continuous
    assert 0.24 * 40 < p["tx"].abs().max() <= 0.25 * 40  # a fraction of the height (tx: Keras' rows)


# --- the resampler against SciPy -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "wrap"])
def test_affine_sample_is_scipy_affine_transform(mode):
    """Keras hands its fill mode to scipy.ndimage.affine_transform(order=1); on random matrices, in float64,
    cnnlab's batched resampler gives SciPy's numbers."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (11, 17)).astype(np.float64)
    matrices = []
    for k in range(64):
        linear = np.eye(2) + rng.normal(0, 0.4, (2, 2))
        shift = rng.normal(0, 8, 2) if k % 4 else rng.integers(-30, 30, 2).astype(float)  # some whole pixels
        matrices.append(np.concatenate([linear if k % 4 else np.eye(2), shift[:, None]], axis=1))
    ours = affine_sample(
        torch.from_numpy(img).expand(64, 1, 11, 17), torch.from_numpy(np.stack(matrices)), mode, cval=7.0
    )
    for m, out in zip(matrices, ours):
        ref = ndimage.affine_transform(img, m[:, :2], m[:, 2], order=1, mode=mode, cval=7.0)
        assert np.abs(out[0].numpy() - ref).max() < 1e-9


def test_fill_modes_on_a_strip_as_scipy_draws_them():
    # A 1x4 strip 'abcd' shifted by two pixels to the right shows what fills the vacated pixels; SciPy's 'wrap'
    # (what Keras runs) has period n - 1 since SciPy 1.6, its period-n wrap being 'grid-wrap'.
    strip = np.array([[10.0, 20.0, 30.0, 40.0]])
    expect = {"nearest": [10, 10, 10, 20], "constant": [99, 99, 10, 20], "reflect": [20, 10, 10, 20]}
    expect["wrap"] = [20, 30, 10, 20]
    shift = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, -2.0]]])
    for mode, values in expect.items():
        ours = affine_sample(torch.tensor(strip)[None, None], torch.tensor(shift), mode, cval=99.0)[0, 0, 0]
        assert ours.tolist() == pytest.approx(values, abs=1e-9), mode
        scipy = ndimage.affine_transform(strip, shift[0, :, :2], shift[0, :, 2], order=1, mode=mode, cval=99.0)
        assert scipy[0].tolist() == values, mode


# --- batches, seeds and settings ----------------------------------------------------------------------------
def batch(n=1, image="rgb"):
    return to_nchw(transforms()[f"input/{image}"]).repeat(n, 1, 1, 1)


def test_identity_parameters_give_the_identity():
    x = batch()
    for aug in (Augment(), Augment(rotation_range=0, zoom_range=0.0, fill_mode="reflect")):
        assert torch.equal(aug(x, torch.Generator().manual_seed(0)), x)
    assert torch.equal(Augment().apply(x, cnnlab_params({}, 1)), x)


def test_same_seed_same_images_and_one_transform_per_image():
    x = batch(6)
    aug = Augment.lesson()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 6))  # each image its own transform


def test_each_image_gets_its_own_flip_and_channel_shift():
    x = batch(32)
    g = torch.Generator().manual_seed(0)
    flipped = Augment(horizontal_flip=True)(x, g)
    assert any(torch.equal(f, x[0].flip(2)) for f in flipped) and any(torch.equal(f, x[0]) for f in flipped)
    shifted = Augment(channel_shift_range=30)(x, g)
    assert shifted.min() >= x.min() and shifted.max() <= x.max()
    assert len({float(s.mean()) for s in shifted}) > 16
    with pytest.raises(ValueError, match="fit"):
        Augment(featurewise_center=True)(x, g)


def test_zoom_ranges_and_shear_units():
    g = torch.Generator().manual_seed(0)
    p = Augment(zoom_range=[0.5, 0.7]).random_params(1000, 28, 28, g)
    assert p["zx"].min() >= 0.5 and p["zx"].max() <= 0.7 and not torch.equal(p["zx"], p["zy"])
    with pytest.warns(UserWarning, match="degrees.*shear_units='radians'"):
        Augment(shear_range=0.2)
    radians = Augment(shear_range=0.2, shear_units="radians").random_params(5000, 28, 28, g)["shear"]
    assert 11.0 < radians.abs().max() <= 11.46  # 0.2 rad = 11.46 degrees


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        Augment(fill_mode="mirror")
    with pytest.raises(ValueError, match="unknown augmentation setting"):
        Augment(rotation=30)
    with pytest.raises(ValueError, match="zoom_range"):
        Augment(zoom_range=[0.5, 0.7, 0.9])
    with pytest.raises(ValueError, match="width_shift_range must be >= 0"):
        Augment(width_shift_range=-3)


def test_the_command_line_keeps_keras_int_and_float_shift_ranges(tmp_path, capsys):
    from cnnlab.cli import build_parser, main
    from cnnlab.cli._settings import augment_settings

    args = build_parser().parse_args(["augment-preview", "--width-shift-range", "3", "--height-shift-range", "3.0"])
    settings = augment_settings(args)
    assert settings["width_shift_range"] == 3 and isinstance(settings["width_shift_range"], int)
    assert isinstance(settings["height_shift_range"], float)
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 33, 3), np.uint8)).save(image)
    assert main(["augment-preview", str(image), "--width-shift-range", "-3", "-o", str(tmp_path / "p.png")]) == 2
    assert "width_shift_range must be >= 0" in capsys.readouterr().err


def test_the_preview_draws_what_training_would_apply_with_the_same_flags(tmp_path, monkeypatch):
    """A knob on its own (--rotation-range 10) is that knob alone in training; the preview once added the
    lesson's shifts, shear and zoom to it. Without flags the preview shows the lesson's settings."""
    from PIL import Image

    import cnnlab.augment
    from cnnlab.cli import main
    from cnnlab.train.recipes import resolve_config

    seen = []
    monkeypatch.setattr(cnnlab.augment, "preview_grid", lambda image, aug, *a, **k: seen.append(aug.config) or "p")
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((20, 33, 3), np.uint8)).save(image)
    for flags in (["--rotation-range", "10"], ["--augment", "--zoom-range", "0.1"], ["--horizontal-flip"], []):
        assert main(["augment-preview", str(image), *flags]) == 0
    trained = resolve_config("lenet5", {"augment": {"rotation_range": 10}}).augment  # as `cnnlab train` resolves it
    assert seen[0] == Augment(**trained).config and seen[0].width_shift_range == 0
    assert seen[1] == Augment.lesson(zoom_range=0.1).config
    assert seen[2] == Augment(horizontal_flip=True).config
    assert seen[3] == Augment.lesson().config


def test_the_preview_title_says_when_shear_is_in_radians_or_the_shift_axes_are_not_keras(tmp_path, monkeypatch):
    """The grid's title names what was drawn in Keras' words, and left out shear_units and keras_axes: with
    --shear-units radians it read 'shear_range=0.2', which Keras reads as 0.2 degrees, over an 11.5-degree shear,
    and with --no-keras-axes 'height_shift_range=0.1' over images moved up and down, not sideways as in Keras."""
    import matplotlib.figure

    titles = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: titles.append(fig.get_suptitle()))
    image = torch.zeros(1, 8, 8)
    preview_grid(image, Augment.lesson(), 2, tmp_path / "lesson.png")
    preview_grid(image, Augment.lesson(shear_units="radians", keras_axes=False), 2, tmp_path / "other.png")
    assert "fill_mode=nearest" in titles[0] and "shear_range=0.2" in titles[0]
    assert "shear_units" not in titles[0] and "keras_axes" not in titles[0]  # Keras' own meanings go without saying
    assert "shear_units=radians" in titles[1] and "keras_axes=False" in titles[1]


def test_the_shift_flags_say_which_way_keras_moves_the_image():
    """Keras' width_shift_range moves an image up and down and its height_shift_range sideways (its swap of x and
    y, which the fixtures Keras wrote show); the flags' help said only 'a fraction of the width' and 'of the
    height', which reads as the other way round."""
    from cnnlab.cli._settings import AUGMENT_HELP

    arrays = transforms()
    image = arrays["input/mnist"][0, :, :, 0].astype(np.float64)

    def centre(picture):  # (row, column) of the centre of mass
        rows, columns = np.indices(picture.shape)
        return np.array([(rows * picture).sum(), (columns * picture).sum()]) / picture.sum()

    for flag, name, axis in (
        ("width_shift_range", "width shift, fraction (-0.073 W)", 0),
        ("height_shift_range", "height shift, fraction (0.061 H)", 1),
    ):
        moved = centre(arrays[f"out/{name}/nearest/mnist"][0, :, :, 0]) - centre(image)
        assert abs(moved[axis]) > 1 and abs(moved[1 - axis]) < 0.2, (name, moved)
        assert AUGMENT_HELP[flag].startswith("as Keras: " + ("up and down" if axis == 0 else "sideways"))


def test_keras_channels_last_arrays_are_refused_saying_how_to_turn_them():
    """ImageDataGenerator.fit(x_train) takes (N, H, W, C) numpy arrays; here a (N, 28, 28, 1) tensor was taken
    as 28 channels (statistics of shape (28, 1, 1), batches of (N, 28, 28, 28)) and numpy gave an AttributeError."""
    from cnnlab.errors import CnnlabError

    keras_layout = np.zeros((4, 28, 28, 1), np.float32)
    for call in (Augment(featurewise_center=True).fit, Augment(rotation_range=10)):
        with pytest.raises(CnnlabError, match=r"permute\(0, 3, 1, 2\) turns Keras' \(N, H, W, C\)"):
            call(keras_layout)
        with pytest.raises(CnnlabError, match=r"must be \(N, C, H, W\), got shape \(4, 28, 28, 1\)"):
            call(torch.from_numpy(keras_layout))
    assert Augment(featurewise_center=True).fit(torch.zeros(4, 1, 28, 28)).mean.shape == (1, 1, 1)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"horizontal_flip": "no"}, "horizontal_flip must be true or false, not str 'no'"),
        ({"vertical_flip": 1}, "vertical_flip must be true or false, not int 1"),
        ({"width_shift_range": "0.1"}, "width_shift_range must be a whole number or a number or a list, not str"),
        ({"cval": "0"}, "cval must be a number, not str '0'"),
        ({"brightness_range": "ab"}, "brightness_range must be a list or None, not str 'ab'"),
    ],
)
def test_a_setting_of_another_type_is_refused_by_name(settings, message):
    """Augment checked the type of three settings: horizontal_flip="no" was taken and flipped (as in Keras'
    ImageDataGenerator, where any true value flips), width_shift_range="0.1" ended in Python's "'<' not supported
    between instances of 'str' and 'int'", cval="0" and brightness_range="ab" waited for the first batch. Every
    setting is now checked against its annotation in AugmentConfig."""
    from cnnlab.errors import WrongType

    with pytest.raises(WrongType) as refused:
        Augment(**settings)
    assert str(refused.value).startswith(message), str(refused.value)
    Augment(width_shift_range=3, height_shift_range=(1, 2), brightness_range=(0.5, 1.5), horizontal_flip=True)
    Augment(rotation_range=np.float32(10), brightness_range=np.array([0.5, 1.5]), vertical_flip=np.True_)  # as before
