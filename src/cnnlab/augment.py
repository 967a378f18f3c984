"""Data augmentation with Keras' ``ImageDataGenerator`` semantics, on whole batches, on any device.

The knobs mean what they mean in Keras (keras/src/legacy/preprocessing/image.py, ``get_random_transform``,
``apply_transform`` and ``standardize``); tests/test_augment.py checks every option against fixtures written
by real Keras (scripts/make_keras_fixtures.py):

- ``rotation_range``: degrees, theta ~ U(-r, r).
- ``width_shift_range`` / ``height_shift_range``: a float below 1 is a fraction of the width/height,
  U(-r, r) * size; a float from 1 is pixels, U(-r, r); an int k is whole pixels, k' * (+-1) with k' drawn
  from 0..k-1 (so 1 never shifts, 3 shifts by -2..2); a list draws one of its values with a random sign.
- ``shear_range``: degrees, shear ~ U(-s, s) (Keras >= 2.3; older Keras and many tutorials meant radians:
  ``shear_units="radians"``). The lesson's 0.2 is therefore a 0.2-degree shear, almost nothing.
- ``zoom_range``: zx and zy drawn independently from [1 - z, 1 + z] (or a given [lo, hi]); the matrix maps
  output to input, so a zoom above 1 shows more of the scene (the content shrinks).
- ``horizontal_flip`` / ``vertical_flip``: each with p = 0.5.
- ``fill_mode``: SciPy's edge rules, which Keras passes on: constant (``cval``), nearest, reflect
  (dcba|abcd|dcba), and wrap as SciPy >= 1.6 reads it: period n - 1, the last pixel overlapping the first
  (the strip 10 20 30 40 moved right by 2 reads 20 30 10 20).
- ``brightness_range``: Keras goes through an 8-bit PIL image: floor(floor(x) * b), clipped to 0..255.
- ``channel_shift_range``, ``rescale``, sample- and feature-wise centring and std normalisation (``fit``
  computes the feature-wise statistics); std normalisation turns the matching centring on, as in Keras.

The transform is Keras' matrix product rotation @ shift @ shear @ zoom, centred on the image, with the
same x/y swap that Keras applies before calling scipy (so, as in Keras, ``height_shift_range`` ends up
moving the image sideways and ``width_shift_range`` up and down: cnnlab keeps Keras' behaviour rather than
its documentation, since reproducing Keras is the point; ``keras_axes=False`` gives the documented axes).
Sampling is bilinear (Keras' order=1), with scipy's edge rules reproduced exactly (see ``affine_sample``).

Random parameters are drawn per image from a ``torch.Generator``: the same seed gives the same images.
"""

from __future__ import annotations

import math
import numbers
import typing
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import TYPE_WORDS, UsageError, expect_type, keras_layout

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
IDENTITY = {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1}  # the geometric parameters of no transform
# What isinstance takes for AugmentConfig's annotations: a float any real number (30 too), numpy's bool and arrays too
KINDS = {float: (numbers.Real,), bool: (bool, np.bool_), list: (list, tuple, np.ndarray), type(None): (type(None),)}

LESSON = dict(
    rotation_range=30,
    width_shift_range=0.1,
    height_shift_range=0.1,
    shear_range=0.2,
    zoom_range=0.2,
    fill_mode="nearest",
)


@dataclass
class AugmentConfig:
    rotation_range: float = 0.0
    width_shift_range: int | float | list = 0.0  # an int means whole pixels, as in Keras
    height_shift_range: int | float | list = 0.0
    shear_range: float = 0.0
    zoom_range: float | list = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    cval: float = 0.0
    brightness_range: list | None = None
    channel_shift_range: float = 0.0
    rescale: float | None = None
    samplewise_center: bool = False
    samplewise_std_normalization: bool = False
    featurewise_center: bool = False
    featurewise_std_normalization: bool = False
    shear_units: str = "degrees"
    keras_axes: bool = True


class Augment:
    """``Augment(rotation_range=30, ...)(x, generator=g)``: a random transform per image of x (N, C, H, W)."""

    def __init__(self, **settings):
        if unknown := sorted(set(settings) - set(AugmentConfig.__dataclass_fields__)):
            raise UsageError(f"unknown augmentation setting(s): {', '.join(unknown)}")
        self.config = cfg = AugmentConfig(**settings)
        for name, hint in typing.get_type_hints(AugmentConfig).items():  # Keras takes any: horizontal_flip="no" flips
            types = typing.get_args(hint) or (hint,)
            words = " or ".join(TYPE_WORDS.get(t, "a list" if t is list else "None") for t in types)
            expect_type(getattr(cfg, name), sum((KINDS.get(t, (t,)) for t in types), ()), name, words)
        if cfg.fill_mode not in FILL_MODES:
            raise UsageError(f"fill_mode must be one of {', '.join(FILL_MODES)}, got {cfg.fill_mode!r}")
        if cfg.shear_units not in ("degrees", "radians"):
            raise UsageError(f"shear_units must be degrees or radians, got {cfg.shear_units!r}")
        for name in ("rotation_range", "shear_range", "channel_shift_range"):  # Keras draws in [-value, value]
            value = getattr(cfg, name)
            if not value >= 0:
                raise UsageError(f"{name} is {value}; expected a number >= 0 (a draw in [-{name}, +{name}])")
        z = cfg.zoom_range
        if isinstance(z, numbers.Real) and not isinstance(z, bool):
            self.zoom = (1 - z, 1 + z)
        elif isinstance(z, (list, tuple)) and len(z) == 2 and all(isinstance(v, numbers.Real) for v in z):
            self.zoom = (float(z[0]), float(z[1]))
        else:
            raise UsageError(f"zoom_range must be a number or [lower, upper], got {z!r}")
        if not 0 < self.zoom[0] <= self.zoom[1]:
            raise UsageError(
                f"zoom_range {z!r} means zooms {self.zoom[0]:g} to {self.zoom[1]:g}; expected 0 < lower <= upper "
                "(a number z: 1 - z to 1 + z, z < 1)"
            )
        if cfg.brightness_range is not None and len(cfg.brightness_range) != 2:
            raise UsageError(f"brightness_range must be [lower, upper], got {cfg.brightness_range!r}")
        for name in ("width_shift_range", "height_shift_range"):
            value = getattr(cfg, name)
            if (min(value, default=0) if isinstance(value, (list, tuple)) else value) < 0:
                raise UsageError(f"{name} must be >= 0 (or a list of shifts), got {value!r}")
        for kind in ("samplewise", "featurewise"):
            if getattr(cfg, f"{kind}_std_normalization") and not getattr(cfg, f"{kind}_center"):
                setattr(cfg, f"{kind}_center", True)  # Keras divides centred values only, and says so
                warnings.warn(f"{kind}_std_normalization turns {kind}_center on, as in Keras", stacklevel=2)
        if cfg.shear_units == "degrees" and 0 < cfg.shear_range < 1:
            warnings.warn(
                f"shear_range={cfg.shear_range} is read in degrees, as Keras >= 2.3 reads it: a barely visible "
                f"shear. If it was meant in radians (as in older Keras, about {math.degrees(cfg.shear_range):.1f} "
                "degrees), pass shear_units='radians'.",
                stacklevel=2,
            )
        self.mean = self.std = None  # Keras' feature-wise statistics, from fit(x)

    @classmethod
    def lesson(cls, **overrides) -> Augment:
        """The lesson's settings: rotation 30, shifts 0.1, shear 0.2, zoom 0.2, fill 'nearest'."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the 0.2-degree shear is the lesson's, as Keras reads it
            return cls(**{**LESSON, **overrides})

    # --- statistics for the feature-wise options (Keras' ImageDataGenerator.fit) -----------------------
    def fit(self, x: torch.Tensor) -> Augment:
        x = _images(x, "Augment.fit(): x").float()
        if self.config.rescale:
            x = x * self.config.rescale
        self.mean = x.mean(dim=(0, 2, 3), keepdim=True)[0]
        self.std = x.std(dim=(0, 2, 3), keepdim=True, correction=0)[0]
        return self

    # --- random parameters -------------------------------------------------------------------------
    def random_params(self, n: int, height: int, width: int, generator=None, device="cpu", dtype=torch.float32) -> dict:
        """One transform per image, drawn as Keras draws them (the ranges' meanings: see the module docstring)."""
        cfg = self.config

        def uniform_bound(rng, size):  # ints and lists are drawn apart, below
            if isinstance(rng, (list, tuple, numbers.Integral)) or not rng:
                return 0.0
            return rng * size if rng < 1 else rng

        def discrete_shift(rng, size):
            """Keras' ``np.random.choice(rng) * np.random.choice([-1, 1])``: choice(k) of an int k is 0..k-1."""
            values = list(range(rng)) if isinstance(rng, numbers.Integral) else list(rng)
            pick = torch.tensor(values, dtype=dtype, device=device)
            pick = pick[torch.randint(len(values), (n,), generator=generator, device=device)]
            sign = torch.randint(2, (n,), generator=generator, device=device) * 2 - 1
            fraction = isinstance(rng, (list, tuple)) and max(rng) < 1  # an int k >= 1 is pixels
            return pick * sign * (size if fraction else 1)

        # The six continuous parameters in one draw, row k uniform in [low_k, high_k] (a zero-width range gives
        # its constant exactly): one random call and one multiply-add instead of a dozen small tensor ops.
        shear = cfg.shear_range * (180 / math.pi if cfg.shear_units == "radians" else 1.0)
        tx = uniform_bound(cfg.height_shift_range, height)  # Keras: tx from the height range, ty from the width
        ty = uniform_bound(cfg.width_shift_range, width)
        low = torch.tensor([-cfg.rotation_range, -tx, -ty, -shear, self.zoom[0], self.zoom[0]], dtype=dtype)
        high = torch.tensor([cfg.rotation_range, tx, ty, shear, self.zoom[1], self.zoom[1]], dtype=dtype)
        u = torch.rand(6, n, generator=generator, device=device, dtype=dtype)
        drawn = torch.addcmul(low.to(device)[:, None], u, (high - low).to(device)[:, None])
        params = dict(zip(("theta", "tx", "ty", "shear", "zx", "zy"), drawn.unbind(0)))
        for key, rng, size in (("tx", cfg.height_shift_range, height), ("ty", cfg.width_shift_range, width)):
            if rng and isinstance(rng, (list, tuple, numbers.Integral)):
                params[key] = discrete_shift(rng, size)

        def coin(enabled):
            return torch.rand(n, generator=generator, device=device) < 0.5 if enabled else None

        def uniform(lo, hi):
            return torch.rand(n, generator=generator, device=device, dtype=dtype) * (hi - lo) + lo

        params["flip_horizontal"] = coin(cfg.horizontal_flip)
        params["flip_vertical"] = coin(cfg.vertical_flip)
        csr = cfg.channel_shift_range
        params["channel_shift"] = uniform(-csr, csr) if csr else None
        params["brightness"] = uniform(*cfg.brightness_range) if cfg.brightness_range is not None else None
        return params

    # --- applying them -----------------------------------------------------------------------------
    def sampling_matrices(self, params: dict, height: int, width: int) -> torch.Tensor:
        """(N, 2, 3) affine maps from output pixel (row, col, 1) to input (row, col), as Keras builds them.

        Keras multiplies rotation @ shift @ shear @ zoom (3x3, in its (x, y) order), centres the product on
        (h/2 - 0.5, w/2 - 0.5), then swaps x and y (M' = P M P). The product is written out here per element,
        batched, instead of as N small matrix products (the tests check it against Keras' own formula):
            A = [[cos t * zx, -sin(t + s) * zy], [sin t * zx, cos(t + s) * zy]]   (R @ shear @ zoom, simplified)
            b = R @ (tx, ty), then b + o - A @ o for the centre o.
        """
        angles = torch.deg2rad(torch.stack([params["theta"], params["theta"] + params["shear"]]))  # t, t + s
        (ct, c_ts), (st, s_ts) = angles.cos(), angles.sin()
        zx, zy, tx, ty = params["zx"], params["zy"], params["tx"], params["ty"]
        a00, a01 = ct * zx, -s_ts * zy  # cos t sin s + sin t cos s = sin(t + s)
        a10, a11 = st * zx, c_ts * zy  # cos t cos s - sin t sin s = cos(t + s)
        ox, oy = height / 2 - 0.5, width / 2 - 0.5
        b0 = ct * tx - st * ty + ox - (a00 * ox + a01 * oy)
        b1 = st * tx + ct * ty + oy - (a10 * ox + a11 * oy)
        if self.config.keras_axes:  # P M P: rows and columns of the 2x2 part swapped, and the offset
            a00, a01, a10, a11, b0, b1 = a11, a10, a01, a00, b1, b0
        return torch.stack([a00, a01, b0, a10, a11, b1], dim=1).view(-1, 2, 3)

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The transform of ``params`` on a float batch (N, C, H, W), in Keras' order: affine, channel shift,
        horizontal flip, vertical flip, brightness."""
        n, c, h, w = x.shape
        brightness = params.get("brightness")
        if all(bool((params[key] == value).all()) for key, value in IDENTITY.items()):  # nothing drawn moves a pixel
            out = x.clone()
        else:
            # Brightness goes through 8 bits, so a value that SciPy computes (in float64) as exactly 128 or 255
            # must not come out as 127.99998 (floored to 127) or 255.00002 (outside 0..255, which makes Keras
            # stretch the whole image first): with brightness the geometry runs in float64 and is then rounded
            # to x's dtype, as SciPy's result is rounded to Keras' float32. In float32 a third of the pixels of
            # the test images came out a grey level or more off.
            work = x.double() if brightness is not None else x
            matrices = self.sampling_matrices(params, h, w)
            out = affine_sample(work, matrices, self.config.fill_mode, self.config.cval).to(x.dtype)
        if params.get("channel_shift") is not None:
            lo = out.amin(dim=(1, 2, 3), keepdim=True)
            hi = out.amax(dim=(1, 2, 3), keepdim=True)
            out = torch.maximum(torch.minimum(out + params["channel_shift"].view(n, 1, 1, 1).to(out.dtype), hi), lo)
        for key, dim in (("flip_horizontal", 3), ("flip_vertical", 2)):
            if params.get(key) is not None:
                out = torch.where(params[key].view(n, 1, 1, 1), out.flip(dim), out)
        if brightness is not None:
            out = pil_brightness(out, brightness)
        return out

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.rescale:
            x = x * cfg.rescale
        if cfg.samplewise_center:
            x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        if cfg.samplewise_std_normalization:
            x = x / (x.std(dim=(1, 2, 3), keepdim=True, correction=0) + 1e-6)
        if (cfg.featurewise_center or cfg.featurewise_std_normalization) and self.mean is None:
            raise UsageError("featurewise_center/std_normalization need fit(x) on training data first")
        if cfg.featurewise_center:
            x = x - self.mean.to(x.device)
        if cfg.featurewise_std_normalization:
            x = x / (self.std.to(x.device) + 1e-6)
        return x

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None, draw: int | None = None, rows=None
    ) -> torch.Tensor:
        """A random transform per image of x. With ``draw`` and ``rows``, parameters are drawn for ``draw``
        images (a global batch across processes) and x's images take rows ``rows`` of them."""
        x = _images(x, "x").float()
        n, _, h, w = x.shape
        params = self.random_params(draw or n, h, w, generator, x.device)  # x is float32 here: so are they
        if rows is not None:
            params = {k: v[rows] if v is not None else None for k, v in params.items()}
        return self.standardize(self.apply(x, params))

    def to_dict(self) -> dict:
        return asdict(self.config)


def _images(x, name: str) -> torch.Tensor:
    """A batch of images (N, C, H, W) as a tensor; Keras' channels-last arrays are refused saying how to turn them
    (taken as they are, their statistics and transforms would run over the wrong axes without an error)."""
    turn = "torch.as_tensor(x).permute(0, 3, 1, 2) turns Keras' (N, H, W, C)"
    expect_type(x, torch.Tensor, name, f"a batch of images, a tensor (N, C, H, W); {turn}")
    if x.ndim != 4 or keras_layout(x.shape):
        raise UsageError(f"{name}: images must be (N, C, H, W), got shape {tuple(x.shape)}; {turn}")
    return x


def affine_sample(x: torch.Tensor, matrices: torch.Tensor, fill_mode: str, cval: float = 0.0) -> torch.Tensor:
    """Bilinear resampling of x (N, C, H, W): output pixel (r, c) takes input (r', c') = M @ (r, c, 1), with
    SciPy's order=1 edge rules (the ones Keras asks SciPy for), all through ``grid_sample``'s vectorised kernel:

    - 'nearest' is border padding on pixel centres;
    - 'reflect' (half-sample symmetric) is reflection padding about the pixel edges (align_corners=False);
    - 'constant' is bilinear inside [0, n-1] and cval outside, without blending;
    - 'wrap' maps each coordinate into [0, n-1] as SciPy does (period n - 1, see ``wrap_like_scipy``), then
      samples with border padding.

    For 'constant' and 'wrap' the test against the edges is made in pixel units: an integer coordinate (a whole
    pixel shift, a flip) is then exact in float32, as it is in SciPy's float64, and lands on the same side.
    """
    n, c, h, w = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # of the coordinates
    matrices = matrices.to(dtype)
    rows = torch.arange(h, device=x.device, dtype=dtype)
    cols = torch.arange(w, device=x.device, dtype=dtype)
    # grid_sample wants, per output pixel, the input's (x = col, y = row) in [-1, 1].
    if fill_mode == "reflect":  # pixel edges -0.5 and n - 0.5 map to -1 and 1
        sx, sy, bx, by, align, padding = 2 / w, 2 / h, 1 / w - 1, 1 / h - 1, False, "reflection"
    else:  # pixel centres 0 and n - 1 map to -1 and 1
        sx, sy, bx, by, align, padding = 2 / max(w - 1, 1), 2 / max(h - 1, 1), -1.0, -1.0, True, "border"
    scale = torch.tensor([[sx], [sy]], dtype=dtype, device=x.device)
    offset = torch.tensor([[bx], [by]], dtype=dtype, device=x.device)
    if fill_mode in ("nearest", "reflect"):
        # Continuous edge rules: fold the scaling into the matrices, rows swapped to (x, y), so that the grid
        # comes out of one broadcast sum in the layout grid_sample reads.
        matrices = matrices.flip(1) * scale
        matrices[:, :, 2:3] += offset
    # Per pixel, a*row + b*col + c: a row term (N, 2, H) plus a column term (N, 2, W), added by broadcasting
    # into (N, 2, H, W). About 4x faster here than a batched matrix product with an inner size of 3.
    row_term = matrices[:, :, 0:1] * rows
    col_term = torch.addcmul(matrices[:, :, 2:3], matrices[:, :, 1:2], cols)
    coords = row_term.unsqueeze(3) + col_term.unsqueeze(2)
    if fill_mode == "constant":  # (row, col) in pixels
        limits = torch.tensor([h - 1, w - 1], dtype=dtype, device=x.device).view(1, 2, 1, 1)
        outside = ((coords < 0) | (coords > limits)).any(dim=1, keepdim=True)
    elif fill_mode == "wrap":
        coords = torch.stack([wrap_like_scipy(coords[:, 0], h), wrap_like_scipy(coords[:, 1], w)], dim=1)
    if fill_mode in ("constant", "wrap"):
        coords = torch.addcmul(offset.unsqueeze(2), coords.flip(1), scale.unsqueeze(2))  # to (x, y) in [-1, 1]
    grid = coords.to(x.dtype).permute(0, 2, 3, 1)  # (N, H, W, 2), a view
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=align)
    if fill_mode == "constant":  # SciPy's 'constant': outside [0, n-1] is cval, with no blending at the edge
        out = torch.where(outside, torch.as_tensor(cval, dtype=x.dtype, device=x.device), out)
    return out


def wrap_like_scipy(coord: torch.Tensor, n: int) -> torch.Tensor:
    """SciPy's ``mode="wrap"`` (ni_interpolation.c, map_coordinate), which is what Keras' fill_mode="wrap" runs:
    since SciPy 1.6 it wraps with period n - 1, the last pixel overlapping the first. A coordinate below 0 goes to
    (0, n-1], one above n - 1 to [0, n-1), one inside stays. (SciPy's period-n wrap is called 'grid-wrap'.)
    At a multiple of n - 1 the value jumps between the two end pixels: whole-pixel coordinates are exact in
    float32 too, but a fractional one within float32 rounding (~1e-5 px) of a multiple may land on the other side."""
    if n <= 1:
        return torch.zeros_like(coord)
    period = n - 1
    below = coord + period * (torch.trunc(-coord / period) + 1)
    above = coord - period * torch.trunc(coord / period)
    return torch.where(coord < 0, below, torch.where(coord > period, above, coord))


def pil_brightness(x: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """Keras' ``apply_brightness_shift(x, b, scale=False)`` on a batch: the image becomes an 8-bit PIL image
    (values truncated; an image reaching outside 0..255 is first stretched to 0..255 by its min and max),
    ``ImageEnhance.Brightness`` blends it with black (PIL: ``(UINT8)(float b * v)``, clipped to 0..255), and a
    stretched image is mapped back. Computed in float32 in Keras' order of operations, as Keras and PIL do."""
    x32 = x.float()
    lo = x32.amin(dim=(1, 2, 3), keepdim=True)
    hi = x32.amax(dim=(1, 2, 3), keepdim=True)
    stretch = (lo < 0) | (hi > 255)
    span = hi - lo
    stretched = (x32 - lo) / torch.where(span > 0, span, torch.ones_like(span)) * 255
    eight_bit = torch.where(stretch, stretched, x32).trunc()
    blended = (brightness.view(len(x), 1, 1, 1).float() * eight_bit).trunc().clamp(0, 255)
    return torch.where(stretch, blended / 255 * span + lo, blended).to(x.dtype)


def preview_grid(image: torch.Tensor, augment: Augment, count: int, path, seed: int = 42, title: str = ""):
    """The lesson's picture: the original image, then ``count`` augmented copies of it, as one PNG."""
    from matplotlib.figure import Figure  # no pyplot: nothing global, no display

    x = image.float().unsqueeze(0).repeat(count, 1, 1, 1)
    out = augment(x, torch.Generator().manual_seed(seed)).clamp(0, 255)
    tiles = [image.float()] + list(out)
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = -(-len(tiles) // columns)
    fig = Figure(figsize=(columns * 1.6, rows * 1.7 + 0.6))
    axes = fig.subplots(rows, columns)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, tile) in enumerate(zip(axes.flat, tiles)):
        if tile.shape[0] == 1:
            ax.imshow(tile[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(tile.permute(1, 2, 0).numpy().astype("uint8"))
        ax.set_title("original" if i == 0 else f"#{i}", fontsize=8)
    defaults = AugmentConfig()  # a setting at its default is left out, but for fill_mode, which the lesson names
    settings = ", ".join(
        f"{k}={v}" for k, v in augment.to_dict().items() if v != getattr(defaults, k) or k == "fill_mode"
    )
    fig.suptitle(f"{title}\n{settings}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
