"""Data augmentation with Keras' ``ImageDataGenerator`` semantics, on whole batches, on any device.

The knobs mean what they mean in Keras (keras/src/legacy/preprocessing/image.py,
``get_random_transform`` and ``apply_affine_transform``):

- ``rotation_range``: degrees, theta ~ U(-r, r).
- ``width_shift_range`` / ``height_shift_range``: a fraction of the width/height when < 1, else pixels;
  a list draws one of its values with a random sign.
- ``shear_range``: degrees, shear ~ U(-s, s) (Keras >= 2.3; older Keras and many tutorials meant radians:
  ``shear_units="radians"``). The lesson's 0.2 is therefore a 0.2-degree shear, almost nothing.
- ``zoom_range``: zx and zy drawn independently from [1 - z, 1 + z] (or a given [lo, hi]); the matrix maps
  output to input, so a zoom above 1 shows more of the scene (the content shrinks).
- ``horizontal_flip`` / ``vertical_flip``: each with p = 0.5.
- ``fill_mode``: constant (with ``cval``), nearest, reflect (dcba|abcd|dcba), wrap (abcd|abcd|abcd).
- ``brightness_range``, ``channel_shift_range``, ``rescale``, sample- and feature-wise centring and std
  normalisation (``fit`` computes the feature-wise statistics).

The transform is Keras' matrix product rotation @ shift @ shear @ zoom, centred on the image, with the
same x/y swap that Keras applies before calling scipy (so, as in Keras, ``height_shift_range`` ends up
moving the image sideways and ``width_shift_range`` up and down: cnnlab keeps Keras' behaviour rather than
its documentation, since reproducing Keras is the point; ``keras_axes=False`` gives the documented axes).
Sampling is bilinear (Keras' order=1), with scipy's edge rules reproduced exactly (see ``affine_sample``).

Random parameters are drawn per image from a ``torch.Generator``: the same seed gives the same images.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass

import torch

FILL_MODES = ("constant", "nearest", "reflect", "wrap")

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
    width_shift_range: float | list = 0.0
    height_shift_range: float | list = 0.0
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

    def to_dict(self) -> dict:
        return asdict(self)


class Augment:
    """``Augment(rotation_range=30, ...)(x, generator=g)``: a random transform per image of x (N, C, H, W)."""

    def __init__(self, **settings):
        unknown = sorted(set(settings) - set(AugmentConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown augmentation setting(s): {', '.join(unknown)}")
        self.config = cfg = AugmentConfig(**settings)
        if cfg.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}, got {cfg.fill_mode!r}")
        if cfg.shear_units not in ("degrees", "radians"):
            raise ValueError(f"shear_units must be degrees or radians, got {cfg.shear_units!r}")
        z = cfg.zoom_range
        if isinstance(z, (int, float)):
            self.zoom = (1 - z, 1 + z)
        elif len(z) == 2:
            self.zoom = (float(z[0]), float(z[1]))
        else:
            raise ValueError(f"zoom_range must be a float or [lower, upper], got {z!r}")
        if cfg.brightness_range is not None and len(cfg.brightness_range) != 2:
            raise ValueError(f"brightness_range must be [lower, upper], got {cfg.brightness_range!r}")
        if cfg.shear_units == "degrees" and 0 < cfg.shear_range < 1:
            warnings.warn(
                f"shear_range={cfg.shear_range} is read in degrees, as Keras >= 2.3 reads it: a barely visible "
                f"shear. If it was meant in radians (as in older Keras, about {math.degrees(cfg.shear_range):.1f} "
                "degrees), pass shear_units='radians'.",
                stacklevel=2,
            )
        self.mean = None
        self.std = None

    @classmethod
    def lesson(cls, **overrides) -> Augment:
        """The lesson's settings: rotation 30, shifts 0.1, shear 0.2, zoom 0.2, fill 'nearest'."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the 0.2-degree shear is the lesson's, as Keras reads it
            return cls(**{**LESSON, **overrides})

    # --- statistics for the feature-wise options (Keras' ImageDataGenerator.fit) -----------------------
    def fit(self, x: torch.Tensor) -> Augment:
        x = x.float()
        if self.config.rescale:
            x = x * self.config.rescale
        self.mean = x.mean(dim=(0, 2, 3), keepdim=True)[0]
        self.std = x.std(dim=(0, 2, 3), keepdim=True, correction=0)[0]
        return self

    # --- random parameters -------------------------------------------------------------------------
    def random_params(self, n: int, height: int, width: int, generator=None, device="cpu", dtype=torch.float32) -> dict:
        """One transform per image, drawn as Keras draws them (uniform ranges; shifts as fractions below 1,
        pixels from 1, or picked from a list with a random sign)."""
        cfg = self.config

        def shift_bound(rng, size):  # a list is drawn apart, below
            if isinstance(rng, (list, tuple)) or not rng:
                return 0.0
            return rng * size if rng < 1 else rng

        def listed_shift(rng, size):
            values = torch.tensor(rng, dtype=dtype, device=device)
            pick = values[torch.randint(len(rng), (n,), generator=generator, device=device)]
            sign = torch.randint(2, (n,), generator=generator, device=device) * 2 - 1
            out = pick * sign
            return out * size if max(rng) < 1 else out

        # The six continuous parameters in one draw, row k uniform in [low_k, high_k] (a zero-width range gives
        # its constant exactly): one random call and one multiply-add instead of a dozen small tensor ops.
        shear = cfg.shear_range * (180 / math.pi if cfg.shear_units == "radians" else 1.0)
        tx = shift_bound(cfg.height_shift_range, height)  # Keras: tx from the height range, ty from the width
        ty = shift_bound(cfg.width_shift_range, width)
        low = torch.tensor([-cfg.rotation_range, -tx, -ty, -shear, self.zoom[0], self.zoom[0]], dtype=dtype)
        high = torch.tensor([cfg.rotation_range, tx, ty, shear, self.zoom[1], self.zoom[1]], dtype=dtype)
        u = torch.rand(6, n, generator=generator, device=device, dtype=dtype)
        drawn = torch.addcmul(low.to(device)[:, None], u, (high - low).to(device)[:, None])
        params = dict(zip(("theta", "tx", "ty", "shear", "zx", "zy"), drawn.unbind(0)))
        if isinstance(cfg.height_shift_range, (list, tuple)):
            params["tx"] = listed_shift(cfg.height_shift_range, height)
        if isinstance(cfg.width_shift_range, (list, tuple)):
            params["ty"] = listed_shift(cfg.width_shift_range, width)

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
        if _is_identity(params):
            out = x.clone()
        else:
            out = affine_sample(x, self.sampling_matrices(params, h, w), self.config.fill_mode, self.config.cval)
        if params.get("channel_shift") is not None:
            lo = out.amin(dim=(1, 2, 3), keepdim=True)
            hi = out.amax(dim=(1, 2, 3), keepdim=True)
            out = torch.maximum(torch.minimum(out + params["channel_shift"].view(n, 1, 1, 1).to(out.dtype), hi), lo)
        if params.get("flip_horizontal") is not None:
            out = torch.where(params["flip_horizontal"].view(n, 1, 1, 1), out.flip(3), out)
        if params.get("flip_vertical") is not None:
            out = torch.where(params["flip_vertical"].view(n, 1, 1, 1), out.flip(2), out)
        if params.get("brightness") is not None:
            # Keras goes through PIL's ImageEnhance.Brightness: a blend with black, clipped to 0..255.
            out = (out * params["brightness"].view(n, 1, 1, 1).to(out.dtype)).clamp(0, 255)
        return out

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.rescale:
            x = x * cfg.rescale
        if cfg.samplewise_center:
            x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        if cfg.samplewise_std_normalization:
            x = x / (x.std(dim=(1, 2, 3), keepdim=True, correction=0) + 1e-6)
        if cfg.featurewise_center or cfg.featurewise_std_normalization:
            if self.mean is None:
                raise ValueError("featurewise_center/std_normalization need fit(x) on training data first")
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
        x = x.float()
        n, _, h, w = x.shape
        params = self.random_params(
            draw or n, h, w, generator, x.device, torch.float64 if x.dtype == torch.float64 else torch.float32
        )
        if rows is not None:
            params = {k: v[rows] if v is not None else None for k, v in params.items()}
        return self.standardize(self.apply(x, params))

    def to_dict(self) -> dict:
        return self.config.to_dict()


def _is_identity(params: dict) -> bool:
    return bool(
        (params["theta"] == 0).all()
        and (params["tx"] == 0).all()
        and (params["ty"] == 0).all()
        and (params["shear"] == 0).all()
        and (params["zx"] == 1).all()
        and (params["zy"] == 1).all()
    )


def affine_sample(x: torch.Tensor, matrices: torch.Tensor, fill_mode: str, cval: float = 0.0) -> torch.Tensor:
    """Bilinear resampling of x (N, C, H, W): output pixel (r, c) takes input (r', c') = M @ (r, c, 1).

    Three of scipy's edge rules are exactly ``grid_sample``'s (a vectorised kernel, several times faster than
    gathering by hand): 'nearest' is border padding on pixel centres; 'reflect' (half-sample symmetric) is
    reflection padding about the pixel edges (align_corners=False); 'constant' is bilinear inside [0, n-1] and
    cval outside, without blending. 'wrap' (period n) has no counterpart there and is gathered by hand.
    """
    n, c, h, w = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    matrices = matrices.to(dtype)
    if fill_mode == "wrap":
        src = matrices @ _pixel_grid(h, w, x.device, dtype)  # (N, 2, H*W): input (row, col) of each output pixel
        return _gather_bilinear_wrap(x, src[:, 0], src[:, 1])
    # grid_sample wants, per output pixel, the input's (x = col, y = row) in [-1, 1]; fold that scaling into
    # the matrices so that one batched product writes the grid in the layout grid_sample reads.
    if fill_mode == "reflect":  # pixel edges -0.5 and n - 0.5 map to -1 and 1
        sx, sy, bx, by, align, padding = 2 / w, 2 / h, 1 / w - 1, 1 / h - 1, False, "reflection"
    else:  # pixel centres 0 and n - 1 map to -1 and 1
        sx, sy, bx, by, align, padding = 2 / max(w - 1, 1), 2 / max(h - 1, 1), -1.0, -1.0, True, "border"
    # Rows swapped to (x, y), scaled and offset in one multiply-add: (N, 2, 3).
    scale = torch.tensor([[sx], [sy]], dtype=dtype, device=x.device)
    offset = torch.tensor([[0.0, 0.0, bx], [0.0, 0.0, by]], dtype=dtype, device=x.device)
    to_unit = torch.addcmul(offset, matrices.flip(1), scale)
    # Per pixel, x = a*row + b*col + c (and so for y): a row term (N, 2, H) plus a column term (N, 2, W), added
    # by broadcasting into (N, 2, H, W), which grid_sample reads through a permuted view. About 4x faster here
    # than a batched matrix product with an inner size of 3, or than writing (N, H, W, 2) directly.
    rows = torch.arange(h, device=x.device, dtype=dtype)
    cols = torch.arange(w, device=x.device, dtype=dtype)
    row_term = to_unit[:, :, 0:1] * rows
    col_term = torch.addcmul(to_unit[:, :, 2:3], to_unit[:, :, 1:2], cols)
    grid = (row_term.unsqueeze(3) + col_term.unsqueeze(2)).to(x.dtype).permute(0, 2, 3, 1)  # (N, H, W, 2)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=align)
    if fill_mode == "constant":  # scipy's 'constant': outside [0, n-1] is cval, with no blending at the edge
        outside = (grid.abs() > 1).any(dim=-1).unsqueeze(1)
        out = torch.where(outside, torch.as_tensor(cval, dtype=x.dtype, device=x.device), out)
    return out


@functools.lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    """(3, H*W): every output pixel's (row, col, 1), built once per size."""
    rows = torch.arange(h, device=device, dtype=dtype).view(h, 1).expand(h, w).reshape(-1)
    cols = torch.arange(w, device=device, dtype=dtype).view(1, w).expand(h, w).reshape(-1)
    return torch.stack([rows, cols, torch.ones(h * w, device=device, dtype=dtype)])


def _gather_bilinear_wrap(x: torch.Tensor, r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling with period-n wrapping (a b c d | a b c d | a b c d), by hand."""
    n, c, h, w = x.shape
    r0, q0 = r.floor(), q.floor()
    fr, fq = (r - r0).unsqueeze(1), (q - q0).unsqueeze(1)
    r0, q0 = r0.long(), q0.long()
    flat = x.reshape(n, c, h * w)
    out = 0
    for dr, dq, weight in ((0, 0, (1 - fr) * (1 - fq)), (0, 1, (1 - fr) * fq), (1, 0, fr * (1 - fq)), (1, 1, fr * fq)):
        index = (torch.remainder(r0 + dr, h) * w + torch.remainder(q0 + dq, w)).unsqueeze(1).expand(n, c, h * w)
        out = out + weight.to(x.dtype) * torch.gather(flat, 2, index)
    return out.reshape(n, c, h, w)


def preview_grid(
    image: torch.Tensor, augment: Augment, count: int, path, seed: int = 42, title: str = "", columns: int | None = None
):
    """The lesson's picture: the original image, then ``count`` augmented copies of it, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = image.float().unsqueeze(0).repeat(count, 1, 1, 1)
    out = augment(x, torch.Generator().manual_seed(seed)).clamp(0, 255)
    tiles = [image.float()] + list(out)
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.7 + 0.6))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(tiles):
            continue
        tile = tiles[i]
        if tile.shape[0] == 1:
            ax.imshow(tile[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(tile.permute(1, 2, 0).numpy().astype("uint8"))
        ax.set_title("original" if i == 0 else f"#{i}", fontsize=8)
    settings = ", ".join(
        f"{k}={v}"
        for k, v in augment.to_dict().items()
        if v not in (0, 0.0, False, None) and k not in ("keras_axes", "shear_units")
    )
    fig.suptitle(f"{title}\n{settings}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
