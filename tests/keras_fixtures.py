"""Real Keras output, read from tests/fixtures/keras_augment (written by scripts/make_keras_fixtures.py, which runs
Keras' ImageDataGenerator), and cnnlab's output for the same parameters. Needs numpy and torch only.

``run_case`` and ``compare_draws`` give the two side by side; the tests assert on them and
scripts/keras_augment_parity.py prints them as the parity table (``parity_rows``, ``draw_rows``)."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from cnnlab.augment import Augment

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras_augment"
GEOMETRY = ("theta", "tx", "ty", "shear", "zx", "zy")
STANDARDIZE = (
    "rescale",
    "samplewise_center",
    "samplewise_std_normalization",
    "featurewise_center",
    "featurewise_std_normalization",
)


@functools.cache
def meta() -> dict:
    return json.loads((FIXTURES / "cases.json").read_text())


@functools.cache
def transforms() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "transforms.npz") as f:  # plain arrays: no pickle
        return {k: f[k] for k in f.files}


@functools.cache
def draws() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "random.npz") as f:
        return {k: f[k] for k in f.files}


def case(name: str) -> dict:
    return next(c for c in meta()["cases"] if c["name"] == name)


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def cnnlab_params(keras_params: dict, n: int) -> dict:
    """Keras' parameter dictionary as cnnlab's batch of n: float64 tensors, as Keras computes its matrices."""

    def repeat(value, dtype=torch.float64):
        return torch.full((n,), value, dtype=dtype)

    defaults = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0)
    params = {k: repeat(float(keras_params.get(k, defaults[k]))) for k in GEOMETRY}
    for ours, theirs in (("flip_horizontal", "flip_horizontal"), ("flip_vertical", "flip_vertical")):
        params[ours] = repeat(bool(keras_params.get(theirs, False)), torch.bool)
    shift, brightness = keras_params.get("channel_shift_intensity"), keras_params.get("brightness")
    params["channel_shift"] = None if shift is None else repeat(float(shift))
    params["brightness"] = None if brightness is None else repeat(float(brightness))
    return params


def augment_for(c: dict, fill: str) -> tuple[Augment, list[str]]:
    """cnnlab's Augment with the case's fill mode and standardisation settings, and the warnings it raised."""
    settings = {k: v for k, v in c["settings"].items() if k in STANDARDIZE}
    if fill == "constant":
        settings["cval"] = c["cval"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aug = Augment(fill_mode=fill, **settings)
    return aug, [str(w.message) for w in caught]


def run_case(
    c: dict, fill: str, image: str, dtype=torch.float32, device="cpu"
) -> tuple[np.ndarray, np.ndarray, Augment]:
    """(Keras' output, cnnlab's output, the Augment used) for one case, fill mode and image, channels-last."""
    arrays = transforms()
    x = to_nchw(arrays[f"input/{image}"]).to(device, dtype)
    aug, _ = augment_for(c, fill)
    if aug.config.featurewise_center or aug.config.featurewise_std_normalization:
        aug.fit(to_nchw(arrays[f"fit/{image}"]).to(device))
    params = {k: None if v is None else v.to(device) for k, v in cnnlab_params(c["params"][image], len(x)).items()}
    out = aug.standardize(aug.apply(x, params))
    return arrays[f"out/{c['name']}/{fill}/{image}"], to_nhwc(out.double().cpu()), aug


def parity_rows(dtype=torch.float32) -> list[tuple[str, str, str, float]]:
    """(case, fill mode, image, max |cnnlab - Keras|) for every stored Keras output."""
    rows = []
    for c in meta()["cases"]:
        for fill in c["fills"]:
            for image in meta()["images"]:
                keras_out, ours, _ = run_case(c, fill, image, dtype)
                rows.append((c["name"], fill, image, float(np.abs(ours - keras_out).max())))
    return rows


# --- random parameters --------------------------------------------------------------------------------------
OUR_NAMES = {"channel_shift_intensity": "channel_shift"}


def compare_draws(name: str, key: str, n: int = 20_000, seed: int = 0) -> dict:
    """Keras' stored draws of one parameter beside n of cnnlab's (seeded), and the test that compares them: for a
    discrete parameter (under 20 distinct values: whole-pixel or listed shifts, flips) the values and a chi-square
    test of homogeneity of their frequencies; for a continuous one the two-sample Kolmogorov-Smirnov test."""
    setting = next(r for r in meta()["random"] if r["name"] == name)
    h, w, _ = setting["shape"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lesson's 0.2-degree shear
        aug = Augment(**setting["settings"])
    params = aug.random_params(n, h, w, torch.Generator().manual_seed(seed), dtype=torch.float64)
    ours = params[OUR_NAMES.get(key, key)].double().numpy()
    keras = draws()[f"{name}/{key}"].astype(np.float64)
    values = np.unique(keras)
    result = dict(name=name, key=key, keras=keras, ours=ours, values=values if len(values) < 20 else None)
    if len(values) >= 20:
        ks = stats.ks_2samp(keras, ours)
        return {**result, "test": "KS", "statistic": float(ks.statistic), "pvalue": float(ks.pvalue)}
    counts = [[int(np.isclose(sample, v, atol=1e-5).sum()) for v in values] for sample in (keras, ours)]
    result["counts"] = counts
    if len(values) == 1:
        return {**result, "test": "constant", "statistic": 0.0, "pvalue": 1.0}
    chi2 = stats.chi2_contingency(counts)
    return {**result, "test": "chi2", "statistic": float(chi2.statistic), "pvalue": float(chi2.pvalue)}


def draw_rows() -> list[dict]:
    return [compare_draws(r["name"], key) for r in meta()["random"] for key in r["keys"]]
