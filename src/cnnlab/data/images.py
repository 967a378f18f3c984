"""Image files as model input, for ``cnnlab predict``: any size, colour or grey, any format Pillow reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError


class ImageError(DataError):
    """An image file cannot be read; the message names the file."""


def open_image(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: unreadable image ({e})") from None


def image_to_tensor(im: Image.Image, size: tuple[int, int, int], invert: str = "auto") -> torch.Tensor:
    """A PIL image as uint8 (C, H, W) of ``size``. Grey models get luminance; colour models RGB.

    ``invert='auto'`` inverts a grey image whose border is light: MNIST digits are light on dark,
    while photos and scans of handwriting are usually dark on light.
    """
    channels, height, width = size
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    im = im.convert("L" if channels == 1 else "RGB")
    im = im.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(im, dtype=np.uint8)
    if channels == 1:
        border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
        if invert == "yes" or (invert == "auto" and border.mean() > 127):
            array = 255 - array
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def load_any_image(path: str | Path) -> torch.Tensor:
    """A file as uint8 (C, H, W) at its own size: grey images keep one channel, everything else becomes RGB."""
    from .folders import to_rgb

    im = open_image(path)
    if im.mode in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(to_rgb(im).convert("L"))[None]
    else:
        array = np.asarray(to_rgb(im)).transpose(2, 0, 1)
    return torch.from_numpy(np.array(array, copy=True, order="C"))
