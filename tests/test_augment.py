"""Parity of cnnlab.augment with Keras' ImageDataGenerator formula (scipy on one numpy image, as Keras does it).

Tolerance: in float64 the two agree to 1e-9 on 0..255 images everywhere (same matrices, same bilinear
weights, same edge rules). In float32, the training dtype, sample coordinates carry ~1e-5 px of rounding;
values then agree within 0.01 except where a coordinate sits on an interpolation edge (the border between
inside and outside in 'constant' mode, or a floor() boundary): there a 1e-5 px difference can pick the
other neighbour or cval, so at most 1% of pixels may differ more.
"""

import numpy as np
import pytest
import torch
from keras_reference import keras_affine

from cnnlab.augment import Augment


def structured_image(h=20, w=24, c=3):
    """Gradients, a bright off-centre rectangle and a diagonal line: every transform shows."""
    rows, cols = np.mgrid[0:h, 0:w]
    img = np.stack([rows * 255.0 / h, cols * 255.0 / w, ((rows + cols) % 7) * 30.0], axis=2)[..., :c]
    img[3:8, 4:15] = 250
    img[np.arange(min(h, w)), np.arange(min(h, w))] = 5
    return img


def run(aug, img, dtype=torch.float64, **params):
    full = {**dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0), **params}
    p = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in full.items()}
    p.update(
        flip_horizontal=torch.tensor([False]), flip_vertical=torch.tensor([False]), channel_shift=None, brightness=None
    )
    x = torch.from_numpy(img).permute(2, 0, 1)[None].to(dtype)
    return aug.apply(x, p)[0].permute(1, 2, 0).double().numpy()


CASES = [
    dict(theta=17),
    dict(theta=-30),
    dict(tx=3.3),
    dict(ty=-2.2),
    dict(tx=-5, ty=4),
    dict(shear=12),
    dict(zx=1.2, zy=0.85),
    dict(zx=0.8, zy=0.8),
    dict(theta=25, tx=2, ty=-1.5, shear=8, zx=0.9, zy=1.1),
]


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_parity_with_keras_formula(mode, params):
    img = structured_image()
    aug = Augment(fill_mode=mode, cval=7.0)
    ref = keras_affine(img, fill_mode=mode, cval=7.0, **params)
    assert np.abs(run(aug, img, **params) - ref).max() < 1e-9
    diff = np.abs(run(aug, img, torch.float32, **params) - ref)
    assert (diff > 0.01).mean() <= 0.01, diff.max()


def test_identity_parameters_give_the_identity():
    img = structured_image()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for aug in (Augment(), Augment(rotation_range=0, zoom_range=0.0, fill_mode="reflect")):
        assert torch.equal(aug(x, torch.Generator().manual_seed(0)), x)
    assert np.array_equal(run(Augment(), img, zx=1.0), img)


def test_same_seed_same_images_and_one_transform_per_image():
    x = torch.from_numpy(structured_image()).permute(2, 0, 1)[None].float().repeat(6, 1, 1, 1)
    aug = Augment.lesson()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 6))  # each image its own transform


def test_fill_modes_look_as_keras_docstring_draws_them():
    # A 1x4 strip 'abcd' shifted by two pixels to the right shows what fills the vacated pixels.
    row = np.array([[10.0, 20.0, 30.0, 40.0]])[..., None]  # (H=1, W=4, C=1)
    # In Keras' axes, tx (height range) moves the image along its width.
    expect = {
        "nearest": [10, 10, 10, 20],
        "constant": [99, 99, 10, 20],
        "reflect": [20, 10, 10, 20],
        "wrap": [30, 40, 10, 20],
    }
    for mode, values in expect.items():
        out = run(Augment(fill_mode=mode, cval=99.0), row, tx=-2)
        assert out[0, :, 0].tolist() == pytest.approx(values, abs=1e-9), mode
        assert keras_affine(row, tx=-2, fill_mode=mode, cval=99.0)[0, :, 0].tolist() == values, mode


def test_shifts_are_fractions_below_one_and_pixels_from_one():
    aug = Augment(width_shift_range=0.25, height_shift_range=3)
    g = torch.Generator().manual_seed(0)
    p = aug.random_params(10_000, 40, 80, g)
    assert p["ty"].abs().max() <= 0.25 * 80 and p["ty"].abs().max() > 0.24 * 80  # fraction of the width
    assert p["tx"].abs().max() <= 3 and p["tx"].abs().max() > 2.9  # pixels
    listed = Augment(width_shift_range=[2, 5]).random_params(1000, 40, 80, g)["ty"]
    assert set(listed.abs().tolist()) == {2.0, 5.0} and (listed < 0).any()


def test_zoom_ranges_and_units():
    g = torch.Generator().manual_seed(0)
    p = Augment(zoom_range=0.2).random_params(5000, 28, 28, g)
    assert 0.8 <= p["zx"].min() < 0.81 and 1.19 < p["zy"].max() <= 1.2
    assert not torch.equal(p["zx"], p["zy"])  # drawn independently
    p = Augment(zoom_range=[0.5, 0.7]).random_params(1000, 28, 28, g)
    assert p["zx"].min() >= 0.5 and p["zx"].max() <= 0.7
    with pytest.warns(UserWarning, match="degrees.*shear_units='radians'"):
        Augment(shear_range=0.2)
    radians = Augment(shear_range=0.2, shear_units="radians").random_params(5000, 28, 28, g)["shear"]
    assert 11.0 < radians.abs().max() <= 11.46  # 0.2 rad = 11.46 degrees


def test_zoom_above_one_shows_more_of_the_scene():
    img = np.zeros((21, 21, 1))
    img[8:13, 8:13] = 255  # a centred square of 5x5
    out = run(Augment(fill_mode="constant"), img, zx=2.0, zy=2.0)
    assert (out > 127).sum() < 25 / 2  # the square shrinks


def test_flips_brightness_channel_shift_and_standardization():
    x = torch.from_numpy(structured_image()).permute(2, 0, 1)[None].float()
    g = torch.Generator().manual_seed(0)
    flipped = Augment(horizontal_flip=True)(x.repeat(32, 1, 1, 1), g)
    assert any(torch.equal(f, x[0].flip(2)) for f in flipped) and any(torch.equal(f, x[0]) for f in flipped)
    dim = Augment(brightness_range=[0.5, 0.5])(x, g)
    assert torch.allclose(dim, x * 0.5)
    shifted = Augment(channel_shift_range=30)(x, g)
    assert shifted.min() >= x.min() and shifted.max() <= x.max() and not torch.equal(shifted, x)
    scaled = Augment(rescale=1 / 255, samplewise_center=True)(x, g)
    assert abs(float(scaled.mean())) < 1e-5 and float(scaled.max()) < 1.0
    feature = Augment(featurewise_center=True, featurewise_std_normalization=True).fit(x.repeat(4, 1, 1, 1))
    out = feature(x, g)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    with pytest.raises(ValueError, match="fit"):
        Augment(featurewise_center=True)(x, g)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        Augment(fill_mode="mirror")
    with pytest.raises(ValueError, match="unknown augmentation setting"):
        Augment(rotation=30)
    with pytest.raises(ValueError, match="zoom_range"):
        Augment(zoom_range=[0.5, 0.7, 0.9])


def test_runs_on_the_batch_device_and_dtype():
    x = torch.rand(4, 1, 28, 28) * 255
    out = Augment.lesson()(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
