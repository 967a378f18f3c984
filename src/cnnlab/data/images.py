"""Image files as pixels: the one decoder behind every use (an image folder's cache, ``predict``, previews).

Any format Pillow reads. Every mode becomes RGB (grey, palette, CMYK, RGBA composited on white, 16-bit and
float scaled to 8 bits), or luminance for grey models. A JPEG wanted smaller is reduced while decoding
(Pillow's ``draft``: DCT scaling by 1/2, 1/4 or 1/8). A file that cannot be read raises ``ImageError``,
naming the file and the reason, never a traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

MAX_PIXELS = 50_000_000  # pixels decoded: a larger image is refused as a likely decompression bomb
GREY_MODES = ("L", "1", "I;16", "I;16B", "I;16L", "I", "F")


class ImageError(DataError):
    """An image file cannot be used; the message names the file and the problem."""


def open_image(path: str | Path, shorter_side: int | None = None) -> Image.Image:
    """The decoded file, upright by its EXIF orientation; a JPEG at the smallest DCT scale whose shorter side is
    still ``shorter_side`` or more."""
    path = Path(path)
    try:
        if path.is_dir():  # before the size: some file systems give a folder 0 bytes
            raise ImageError(f"{path}: a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixels decoded are checked below
            with Image.open(path) as im:
                w, h = im.size
                if shorter_side and im.format == "JPEG":
                    scale = shorter_side / min(w, h)
                    im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
                if im.width * im.height > MAX_PIXELS:  # a camera's 61 or 108 MP JPEG, drafted 1/8, is no bomb
                    limit = f"limit {MAX_PIXELS:,}"
                    raise ImageError(f"{path}: {w}x{h} pixels is too large (a decompression bomb?); {limit}")
                im.load()
                # A phone photo stored on its side with an EXIF orientation is read as it is shown (Keras' load_img
                # reads the stored pixels: sideways; a model trained upright misreads them).
                ImageOps.exif_transpose(im, in_place=True)
                return im  # leaving ``with`` closes the file only; the pixels stay loaded
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or truncated image ({e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB: alpha composited on white, 16-bit and float scaled to 8 bits, CMYK converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or array.max() > 255 else 255.0
        im = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("RGB")


def to_grey(im: Image.Image) -> Image.Image:
    return im if im.mode == "L" else to_rgb(im).convert("L")  # grey RGB -> L gives the same values back


def image_to_tensor(im: Image.Image, size: tuple[int, int, int], invert: str = "auto") -> torch.Tensor:
    """A PIL image as uint8 (C, H, W) of ``size``: luminance for grey models, RGB for colour ones. ``invert='auto'``
    inverts a grey image whose border is light: MNIST digits are light on dark, photos and scans of handwriting
    usually dark on light."""
    channels, height, width = size
    im = (to_grey(im) if channels == 1 else to_rgb(im)).resize((width, height), Image.Resampling.BILINEAR)
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
    im = open_image(path)
    return image_to_tensor(im, (1 if im.mode in GREY_MODES else 3, im.height, im.width), invert="no")
