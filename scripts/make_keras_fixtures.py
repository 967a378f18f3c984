"""Write the fixtures that make real Keras the oracle of cnnlab's augmentation tests.

Runs Keras' own ``ImageDataGenerator`` (``keras.src.legacy.preprocessing.image``, Keras 3, the class that
``keras.preprocessing.image.ImageDataGenerator`` was) and stores, in ``tests/fixtures/keras_augment/``:

- ``cases.json``: the versions that made them, the input images' names, and for every case the generator's
  settings, the exact transform parameters given to ``apply_transform`` (so no randomness is involved), the fill
  modes, and the warnings Keras raised when the generator was built;
- ``transforms.npz``: the inputs (float32, channels-last, 0..255 integers) and, per case, fill mode and image,
  Keras' output of ``standardize(apply_transform(x, params))``, as ``flow`` computes each image; for the
  feature-wise cases also the mean and std that ``fit`` found;
- ``random.npz``: many draws of ``get_random_transform`` per setting (np.random seeded), so that the tests can
  compare cnnlab's sampler with Keras' distributions.

The tests read these files with numpy only: neither TensorFlow nor Keras is needed to run them.

Regenerate (from the repository root; TensorFlow is only needed because Keras 3 imports a backend):

    python3 -m venv /tmp/kerasenv
    /tmp/kerasenv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 scipy numpy pillow
    /tmp/kerasenv/bin/python scripts/make_keras_fixtures.py --mnist ../shared/data/mnist

``--mnist DIR`` takes one real digit (the first test image) from ``t10k-images-idx3-ubyte[.gz]``; without it the
digit is drawn synthetically, so the script also runs where MNIST is absent. The other images are synthetic and
deterministic. Keras passes the fill mode straight to SciPy, so the SciPy version is part of the result (it is
recorded in cases.json): SciPy >= 1.6 reads ``mode="wrap"`` with period n - 1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_augment"
FILLS = ("constant", "nearest", "reflect", "wrap")
CVAL = 40.0  # a visible constant fill, different from the images' background
DRAWS = 2000  # per random setting


# --- inputs -------------------------------------------------------------------------------------------
def mnist_digit(folder: Path | None) -> np.ndarray:
    """(28, 28, 1): MNIST's first test image, or a synthetic '7' of the same look."""
    if folder is not None:
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
            path = folder / name
            if path.exists():
                raw = path.read_bytes()
                raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                return np.frombuffer(raw, np.uint8, 28 * 28, offset=16).reshape(28, 28, 1).astype(np.float32)
        raise SystemExit(f"{folder}: no t10k-images-idx3-ubyte[.gz] there")
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float64)
    bar = np.exp(-(((rows - 7) / 1.3) ** 2)) * ((cols > 5) & (cols < 22))
    stem = np.exp(-(((cols - (21 - (rows - 7) * 0.45)) / 1.4) ** 2)) * ((rows > 6) & (rows < 25))
    return np.clip(np.round(255 * np.maximum(bar, stem)), 0, 255).reshape(28, 28, 1).astype(np.float32)


def shapes(h: int, w: int, channels: int, variant: int = 0) -> np.ndarray:
    """Piecewise-constant shapes with sharp edges, some touching the border (so every fill mode shows), and a
    diagonal band: integer values 0..255, as decoded 8-bit images are."""
    rows, cols = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, channels), np.float32)
    levels = np.array([[30, 200, 90], [220, 60, 140], [120, 250, 10], [255, 0, 180]])[:, :channels]
    if variant:
        levels = levels[::-1]
    img[:] = levels[0]
    img[(rows < h // 3) & (cols >= w // 2)] = levels[1]  # the top-right corner block
    img[((rows - 0.6 * h) ** 2 + (cols - 0.3 * w) ** 2) < (0.22 * min(h, w)) ** 2] = levels[2]  # a disc
    img[np.abs(rows - cols + w // 4) <= 1] = levels[3]  # a diagonal band
    img[:, 0] = levels[3]  # the left edge
    return img


def make_inputs(mnist: Path | None) -> tuple[dict, dict]:
    images = {
        "mnist": mnist_digit(mnist)[None],  # (1, 28, 28, 1)
        "grey": shapes(28, 28, 1)[None],  # (1, 28, 28, 1): MNIST's size, with content at the edges
        "rgb": shapes(20, 33, 3)[None],  # (1, 20, 33, 3): colour and not square
    }
    fit_sets = {  # what the feature-wise cases are fitted on
        "mnist": np.concatenate([images["mnist"], images["grey"]]),
        "grey": np.concatenate([images["mnist"], images["grey"]]),
        "rgb": np.concatenate([images["rgb"], shapes(20, 33, 3, variant=1)[None]]),
    }
    return images, fit_sets


# --- the transform cases ------------------------------------------------------------------------------
# Parameters are given per image as a function of (height, width), since Keras' fraction shifts are fractions
# of the image's size. BASE, a mild rotation and shift, goes under the photometric options so that the fill
# mode matters there too (it changes the pixels that the channel shift clips to and that brightness floors).
BASE = dict(theta=12.5, ty=1.5)


def geometric(**params):
    return lambda h, w: params


CASES = [
    # name, generator settings, params(h, w), fill modes
    ("rotation 23.7", {}, geometric(theta=23.7), FILLS),
    ("rotation -61", {}, geometric(theta=-61.0), FILLS),
    ("width shift, fraction (-0.073 W)", {}, lambda h, w: dict(ty=-0.073 * w), FILLS),
    ("width shift, whole pixels (2)", {}, geometric(ty=2), FILLS),
    ("height shift, fraction (0.061 H)", {}, lambda h, w: dict(tx=0.061 * h), FILLS),
    ("height shift, whole pixels (-3)", {}, geometric(tx=-3), FILLS),
    ("shift beyond the image (31, -35)", {}, geometric(tx=31, ty=-35), FILLS),
    ("shear 14.5 degrees", {}, geometric(shear=14.5), FILLS),
    ("zoom 0.83 x 0.91 (content grows)", {}, geometric(zx=0.83, zy=0.91), FILLS),
    ("zoom 1.17 x 1.31 (content shrinks)", {}, geometric(zx=1.17, zy=1.31), FILLS),
    (
        "lesson's kind (all six at once)",
        {},
        lambda h, w: dict(theta=-17.3, tx=0.068 * h, ty=-0.086 * w, shear=0.13, zx=0.88, zy=1.14),
        FILLS,
    ),
    ("horizontal flip", {}, geometric(**BASE, flip_horizontal=True), FILLS),
    ("vertical flip", {}, geometric(**BASE, flip_vertical=True), FILLS),
    ("channel shift +37.5", {}, geometric(**BASE, channel_shift_intensity=37.5), FILLS),
    ("channel shift -52.25", {}, geometric(**BASE, channel_shift_intensity=-52.25), FILLS),
    ("brightness 0.63", {}, geometric(**BASE, brightness=0.63), FILLS),
    ("brightness 1.37", {}, geometric(**BASE, brightness=1.37), FILLS),
    ("brightness 0.81, no transform", {}, geometric(brightness=0.81), ("nearest",)),
    ("brightness 0.7, cval 300", {"cval": 300.0}, geometric(**BASE, brightness=0.7), ("constant",)),
    ("rescale 1/255", {"rescale": 1 / 255}, geometric(**BASE), FILLS),
    ("samplewise centre", {"samplewise_center": True}, geometric(**BASE), FILLS),
    (
        "samplewise centre + std",
        {"samplewise_center": True, "samplewise_std_normalization": True},
        geometric(**BASE),
        FILLS,
    ),
    ("samplewise std only", {"samplewise_std_normalization": True}, geometric(**BASE), FILLS),
    ("featurewise centre", {"featurewise_center": True}, geometric(**BASE), FILLS),
    (
        "featurewise centre + std",
        {"featurewise_center": True, "featurewise_std_normalization": True},
        geometric(**BASE),
        FILLS,
    ),
    ("featurewise std only", {"featurewise_std_normalization": True}, geometric(**BASE), FILLS),
    (
        "everything at once",
        {
            "rescale": 1 / 255,
            "featurewise_center": True,
            "featurewise_std_normalization": True,
            "samplewise_center": True,
        },
        lambda h, w: dict(
            theta=8.2,
            tx=-0.04 * h,
            ty=1,
            shear=3.5,
            zx=1.08,
            zy=0.94,
            flip_horizontal=True,
            channel_shift_intensity=21.0,
            brightness=1.12,
        ),
        FILLS,
    ),
]

# --- the random-parameter draws -------------------------------------------------------------------------
# name, generator settings, image shape (H, W, C), the parameters worth keeping
RANDOM = [
    ("width_shift_range=3 (int)", {"width_shift_range": 3}, (28, 28, 1), ["ty"]),
    ("height_shift_range=2 (int)", {"height_shift_range": 2}, (20, 33, 3), ["tx"]),
    ("width_shift_range=1 (int)", {"width_shift_range": 1}, (28, 28, 1), ["ty"]),
    ("width_shift_range=0.1", {"width_shift_range": 0.1}, (28, 28, 1), ["ty"]),
    ("height_shift_range=0.1", {"height_shift_range": 0.1}, (20, 33, 3), ["tx"]),
    ("width_shift_range=2.5 (float pixels)", {"width_shift_range": 2.5}, (20, 33, 3), ["ty"]),
    ("width_shift_range=3.0 (float pixels)", {"width_shift_range": 3.0}, (28, 28, 1), ["ty"]),
    ("width_shift_range=[2, 5]", {"width_shift_range": [2, 5]}, (28, 28, 1), ["ty"]),
    ("height_shift_range=[0.1, 0.2]", {"height_shift_range": [0.1, 0.2]}, (20, 33, 3), ["tx"]),
    ("rotation_range=30", {"rotation_range": 30}, (28, 28, 1), ["theta"]),
    ("zoom_range=0.2", {"zoom_range": 0.2}, (28, 28, 1), ["zx", "zy"]),
    ("zoom_range=[0.5, 0.9]", {"zoom_range": [0.5, 0.9]}, (20, 33, 3), ["zx", "zy"]),
    ("shear_range=12", {"shear_range": 12}, (28, 28, 1), ["shear"]),
    ("brightness_range=[0.5, 1.5]", {"brightness_range": [0.5, 1.5]}, (20, 33, 3), ["brightness"]),
    ("channel_shift_range=40", {"channel_shift_range": 40}, (20, 33, 3), ["channel_shift_intensity"]),
    (
        "horizontal_flip and vertical_flip",
        {"horizontal_flip": True, "vertical_flip": True},
        (28, 28, 1),
        ["flip_horizontal", "flip_vertical"],
    ),
    (
        "the lesson's settings",
        {
            "rotation_range": 30,
            "width_shift_range": 0.1,
            "height_shift_range": 0.1,
            "shear_range": 0.2,
            "zoom_range": 0.2,
        },
        (28, 28, 1),
        ["theta", "tx", "ty", "shear", "zx", "zy"],
    ),
]


def build_generator(settings: dict, **fill):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gen = ImageDataGenerator(**settings, **fill)
    return gen, [str(w.message) for w in caught]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, help="folder with MNIST's t10k-images-idx3-ubyte[.gz]")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import keras
    import PIL
    import scipy

    images, fit_sets = make_inputs(args.mnist)
    arrays = {f"input/{k}": v for k, v in images.items()}
    arrays.update({f"fit/{k}": v for k, v in fit_sets.items()})
    cases = []
    for name, settings, params_of, fills in CASES:
        cval = settings.get("cval", CVAL)  # the fill value of the constant mode
        case = {"name": name, "settings": settings, "fills": list(fills), "cval": cval, "params": {}}
        for fill in fills:
            gen_settings = {**settings, "cval": cval} if fill == "constant" else settings
            for image, x in images.items():
                h, w = x.shape[1:3]
                params = params_of(h, w)
                case["params"][image] = params
                gen, caught = build_generator(gen_settings, fill_mode=fill)
                case["keras_warnings"] = caught
                if gen.featurewise_center or gen.featurewise_std_normalization:
                    gen.fit(fit_sets[image])
                    arrays[f"fit_mean/{name}/{fill}/{image}"] = np.asarray(gen.mean, np.float32)
                    if gen.std is not None:
                        arrays[f"fit_std/{name}/{fill}/{image}"] = np.asarray(gen.std, np.float32)
                # As flow() does per image: the transform on a float32 copy, then standardize.
                out = np.stack([gen.standardize(gen.apply_transform(img.copy(), params)) for img in x])
                arrays[f"out/{name}/{fill}/{image}"] = out.astype(np.float32)
        cases.append(case)

    draws, random_cases = {}, []
    for name, settings, shape, keys in RANDOM:
        gen, _ = build_generator(settings)
        np.random.seed(20260101)
        samples = [gen.get_random_transform(shape) for _ in range(DRAWS)]
        for key in keys:
            draws[f"{name}/{key}"] = np.array([float(s[key]) for s in samples], np.float32)
        random_cases.append({"name": name, "settings": settings, "shape": list(shape), "keys": keys})

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "transforms.npz", **arrays)
    np.savez_compressed(args.out / "random.npz", **draws)
    meta = {
        "made_by": "scripts/make_keras_fixtures.py" + (" --mnist" if args.mnist else ""),
        "versions": {
            "keras": keras.__version__,
            "scipy": scipy.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "python": platform.python_version(),
        },
        "reference": "keras.src.legacy.preprocessing.image.ImageDataGenerator (channels_last, float32)",
        "images": {k: list(v.shape) for k, v in images.items()},
        "mnist_image": "t10k-images-idx3-ubyte, index 0" if args.mnist else "synthetic",
        "draws_per_setting": DRAWS,
        "cases": cases,
        "random": random_cases,
    }
    (args.out / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.iterdir())}
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
