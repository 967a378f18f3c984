"""Folders of image files: which files, which labels, and how each file becomes pixels.

Two labelled layouts are recognised: Kaggle's (``train/cat.123.jpg``: the label is the name's prefix
before the first dot) and the usual class-per-subfolder one (``train/cat/xyz.jpg``). An unlabelled folder
(Kaggle's ``test1/123.jpg``) is read for prediction, with ids from the file names.

Decoding converts every mode to RGB (grey, palette, CMYK, RGBA composited on white, 16-bit scaled to 8),
reduces JPEGs while decoding where the codec can (Pillow's ``draft``: DCT scaling by 1/2, 1/4 or 1/8), then
resizes aspect-aware: the shorter side to the target, then a centre crop. A file that cannot be read is
reported with its name and the reason, never with a traceback, and never silently.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 50_000_000  # a larger image is refused as a likely decompression bomb (Pillow's own limit is 89M)


class FolderError(DataError):
    """A folder holds no usable images or labels; the message names it and says what was expected."""


class BadImage(DataError):
    """One image file cannot be used; the message names the file and the problem."""


@dataclass
class FolderListing:
    root: Path
    files: list[Path]
    labels: list[int] | None  # None: an unlabelled folder
    classes: tuple[str, ...]
    layout: str  # "kaggle" | "subfolders" | "unlabelled"
    ignored: list[str] = field(default_factory=list)  # files that are not images, by name


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def scan_folder(root: str | Path, allow_unlabelled: bool = False) -> FolderListing:
    """List a folder's images and labels (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.exists():
        raise FolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_class = {d.name: sorted((p for p in d.iterdir() if _is_image(p)), key=_natural_key) for d in subdirs}
    by_class = {k: v for k, v in by_class.items() if v}
    loose = sorted((p for p in root.iterdir() if _is_image(p)), key=_natural_key)
    ignored = sorted(p.name for p in root.iterdir() if p.is_file() and not _is_image(p) and not p.name.startswith("."))
    if by_class and not loose:
        classes = tuple(sorted(by_class))
        files = [f for c in classes for f in by_class[c]]
        labels = [i for i, c in enumerate(classes) for _ in by_class[c]]
        layout = "subfolders"
    elif loose:
        prefixes = [p.name.split(".")[0] if p.name.count(".") >= 2 else None for p in loose]
        if all(prefixes) and not all(x.isdigit() for x in prefixes):
            classes = tuple(sorted(set(prefixes)))
            files, labels, layout = loose, [classes.index(x) for x in prefixes], "kaggle"
        elif allow_unlabelled:
            return FolderListing(root, loose, None, (), "unlabelled", ignored)
        else:
            unnamed = next(p.name for p, x in zip(loose, prefixes) if not x)
            raise FolderError(
                f"{root}: cannot tell the labels: {unnamed} is not named CLASS.N.ext (Kaggle's layout) "
                "and there are no class subfolders"
            )
    else:
        raise FolderError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
            "in the folder or in class subfolders)"
        )
    if len(classes) < 2:
        raise FolderError(f"{root}: only one class ({classes[0]}) found; training needs at least two")
    check_class_names(root, files, labels, classes, layout)
    return FolderListing(root, files, labels, classes, layout, ignored)


def check_class_names(root: Path, files: list[Path], labels: list[int], classes: tuple[str, ...], layout: str):
    """Refuse classes that look like naming slips rather than classes, naming the files and the classes.

    Classes that differ only in case (``Dog.9.jpg`` beside ``dog.*.jpg``) are refused rather than folded
    together: folding would guess the label of a misnamed file silently, and on a case-sensitive file system
    ``Dog`` and ``dog`` may be meant apart; a rename settles it. In Kaggle's layout, where every file name
    carries its label, a class of one file is a misnamed file far more often than a class."""
    per_label = Counter(labels)
    counts = {c: per_label[i] for i, c in enumerate(classes)}
    listed = ", ".join(f"{c} ({n})" for c, n in counts.items())
    by_fold: dict[str, list[str]] = {}
    for c in classes:
        by_fold.setdefault(c.casefold(), []).append(c)
    clashes = [names for names in by_fold.values() if len(names) > 1]
    if clashes:
        names = clashes[0]
        minority = min(names, key=counts.get)
        where = [str(f.relative_to(root)) for f, y in zip(files, labels) if classes[y] == minority][:3]
        raise FolderError(
            f"{root}: classes {' and '.join(repr(n) for n in names)} differ only in case ({', '.join(where)}"
            f"{', ...' if counts[minority] > 3 else ''}); rename to one spelling. Classes: {listed}"
        )
    singles = [c for c, n in counts.items() if n == 1]
    if layout == "kaggle" and singles and max(counts.values()) > 1:
        stray = [str(f.relative_to(root)) for f, y in zip(files, labels) if classes[y] in singles]
        raise FolderError(
            f"{root}: {', '.join(stray[:5])}{', ...' if len(stray) > 5 else ''} would each be a class of one "
            f"image (a misnamed file? Kaggle's names are CLASS.N.jpg); rename or remove. Classes: {listed}"
        )


def decode(path: str | Path, size: int) -> np.ndarray:
    """One image file as uint8 RGB (size, size, 3): shorter side resized to ``size``, then centre-cropped."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise BadImage(f"{path}: {w}x{h} pixels is too large (a decompression bomb?); limit {MAX_PIXELS:,}")
                if im.format == "JPEG":
                    scale = size / min(w, h)
                    im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
                im.load()
                rgb = to_rgb(im)
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise BadImage(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"{path}: refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"{path}: unreadable or truncated image ({e})") from None
    return resize_and_crop(rgb, size)


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


def resize_and_crop(im: Image.Image, size: int) -> np.ndarray:
    w, h = im.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    im = im.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def kaggle_id(path: Path) -> int | str:
    """Kaggle's test1/123.jpg -> 123 (numeric ids sort numerically)."""
    stem = path.name.split(".")[0]
    return int(stem) if stem.isdigit() else stem
