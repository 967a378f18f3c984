"""Folders of image files: which files, which labels, and how each file becomes pixels.

Two labelled layouts are recognised: Kaggle's (``train/cat.123.jpg``: the label is the name's prefix
before the first dot) and the usual class-per-subfolder one (``train/cat/xyz.jpg``). An unlabelled folder
(Kaggle's ``test1/123.jpg``) is read for prediction.

A class folder's images count at any depth, as in Keras' ``flow_from_directory``; a folder of loose images
beside class subfolders is refused as ambiguous. A file is decoded by images.py, then resized aspect-aware: the
shorter side to the target, then a centre crop. Anything in the folder that is not an image of its layout (other
files, broken links, empty class folders, folders without images beside Kaggle's names) is left out by name
(``FolderListing.ignored``), and said so in the run's notes; never silently.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .images import open_image, to_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BROKEN_LINK = " (a broken link to "  # how an ignored name says that it names a link to nothing


class FolderError(DataError):
    """A folder holds no usable images or labels; the message names it and says what was expected."""


@dataclass
class FolderListing:
    root: Path
    files: list[Path]
    labels: list[int] | None  # None: an unlabelled folder
    classes: tuple[str, ...]
    layout: str  # "kaggle" | "subfolders" | "unlabelled"
    ignored: list[str] = field(default_factory=list)  # what was left out, relative to root; folders end in "/"

    def kaggle_inside(self, classes=None) -> str | None:
        """Where a class folder is Kaggle's train/ (train.zip unzipped into train/: train/train/cat.0.jpg; or Kaggle's
        own folder, whose other class test1/ holds 1.jpg), the folder to give instead (for evaluation: one named
        with the run's ``classes``); else None."""
        for label, name in enumerate(self.classes if self.layout == "subfolders" and len(self.classes) <= 2 else ()):
            files = [f for f, y in zip(self.files, self.labels) if y == label]
            names = set(kaggle_prefixes(files) or ())  # cat/ of cat.1.jpg, kitten.2.jpg is a class cat
            numbered = all(f.stem.isdigit() for f, y in zip(self.files, self.labels) if y != label)
            if len(names) > 1 and name not in names and names <= set(classes or names) and numbered:
                named = f"{name}/, named as Kaggle's ({files[0].name})"
                return f"{self.root}: holds its images in {named}: give that folder, {self.root / name}"
        return None

    def ignored_note(self) -> str | None:
        """One line counting and naming what was left out, or None."""
        if not self.ignored:
            return None
        kinds = Counter(map(_kind, self.ignored))
        counted = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
        names = ", ".join(self.ignored[:5]) + (f", ... ({len(self.ignored) - 5} more)" if len(self.ignored) > 5 else "")
        return (
            f"{self.root}: left out {len(self.ignored)} "
            f"{'entry that is not an image' if len(self.ignored) == 1 else 'entries that are not images'} "
            f"of the {self.layout} layout ({counted}; images are {', '.join(sorted(IMAGE_SUFFIXES))}): {names}"
        )


def _kind(ignored: str) -> str:
    """An ignored entry's kind in the note's count: a folder (the name ends in /), a broken link, or its suffix."""
    if ignored.endswith("/"):
        return "folder"
    return "broken link" if BROKEN_LINK in ignored else Path(ignored).suffix.lower() or "no suffix"


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _entries(folder: Path, root: Path) -> tuple[list[Path], list[Path], list[str]]:
    """(images, subfolders, other files by name relative to ``root``) of ``folder``; hidden entries aside."""
    images, folders, others = [], [], []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir():
            folders.append(p)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif p.is_symlink() and not p.exists():  # its target was moved or deleted: the name alone would not say
            others.append(f"{p.relative_to(root)}{BROKEN_LINK}{p.readlink()})")
        else:
            others.append(str(p.relative_to(root)))
    return sorted(images, key=_natural_key), sorted(folders), sorted(others)


def _class_images(folder: Path, root: Path) -> tuple[list[Path], list[str]]:
    """A class folder's images at any depth, as Keras' flow_from_directory takes them (its own first, then each
    subfolder's), and its other files by name. A link to a folder below a class is not followed (a loop)."""
    images, folders, others = _entries(folder, root)
    for sub in folders:
        if sub.is_symlink():
            others.append(f"{sub.relative_to(root)}/")
            continue
        more, rest = _class_images(sub, root)
        images, others = images + more, others + rest
    return images, others


def scan_folder(root: str | Path, unlabelled: bool = False, min_classes: int = 2) -> FolderListing:
    """List a folder's images and labels (see the module docstring for the layouts); training needs two classes,
    an evaluation may hold one of the run's (``min_classes=1``), a prediction none (``unlabelled``)."""
    root = Path(root)
    if not root.exists():
        raise FolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    loose, subdirs, ignored = _entries(root, root)
    by_class, inside = {}, []
    for d in subdirs:
        by_class[d.name], others = _class_images(d, root)
        inside += others
    if loose and any(by_class.values()):
        folders = [f"{name}/" for name, images in by_class.items() if images]
        raise FolderError(
            f"{root}: holds loose images ({loose[0].name}{', ...' if len(loose) > 1 else ''}) beside class "
            f"subfolders ({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''}): one layout per folder; "
            "move the loose images into their class folders (or out)"
        )
    if any(by_class.values()):
        ignored += [f"{name}/" for name, images in by_class.items() if not images] + inside
        classes = tuple(sorted(name for name, images in by_class.items() if images))
        files = [f for c in classes for f in by_class[c]]
        labels = [i for i, c in enumerate(classes) for _ in by_class[c]]
        layout = "subfolders"
    elif loose:
        ignored += [f"{d.relative_to(root)}/" for d in subdirs]
        if prefixes := kaggle_prefixes(loose):
            classes = tuple(sorted(set(prefixes)))
            files, labels, layout = loose, [classes.index(x) for x in prefixes], "kaggle"
        elif unlabelled:
            return FolderListing(root, loose, None, (), "unlabelled", sorted(ignored))
        else:
            unnamed = next((p.name for p in loose if p.name.count(".") < 2), loose[0].name)  # or a date: 2020.01.05
            raise FolderError(
                f"{root}: cannot tell the labels: {unnamed} is not named CLASS.N.ext (Kaggle's layout) "
                "and there are no class subfolders"
            )
    else:
        raise FolderError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
            "in the folder or in class subfolders)"
        )
    if unlabelled:  # a folder above Kaggle's test1/ (or test1/test1/, as some unzip it), or its train/
        held = f"labelled names ({files[0].name})"
        if layout == "subfolders":
            held = f"its images in subfolders ({', '.join(name + '/' for name in classes[:3])})"
        raise FolderError(f"{root}: holds {held}; give the folder of unlabelled images N.jpg, as Kaggle's test1/")
    listing = FolderListing(root, files, labels, classes, layout, sorted(ignored))
    hint = listing.kaggle_inside()  # with two classes, Kaggle's train/ and test1/: "test1 vs train" is no task
    if len(classes) < min_classes or (hint and len(classes) > 1):
        raise FolderError(hint or f"{root}: only one class ({classes[0]}) found; training needs at least two")
    check_class_names(root, files, labels, classes, layout)
    return listing


def kaggle_prefixes(files: list[Path]) -> list[str] | None:
    """Each file's class where every file is named as in Kaggle's train/, CLASS.N.ext, with classes that are not
    numbers (a date's 2020.01.05.png is no class); else None."""
    prefixes = [p.name.split(".")[0] if p.name.count(".") >= 2 else None for p in files]
    return prefixes if all(prefixes) and not all(x.isdigit() for x in prefixes) else None


def files_identity(*listings: FolderListing | None) -> str:
    """A digest of the listings' file names, relative to their folders, and sizes: the same for a folder moved or
    copied whole, another for a folder of as many other images."""
    lines = [f"{p.relative_to(x.root)}\0{p.stat().st_size}" for x in filter(None, listings) for p in x.files]
    return hashlib.sha256("\n".join(lines).encode(errors="surrogateescape")).hexdigest()


def folder_label(folder: str | Path, sep: str = "/") -> str:
    """'../shared/data/dogs-vs-cats-small/train' -> 'dogs-vs-cats-small/train': the name of an image folder in a
    run's name, its data description and its eval-<label>/ folder. Two names, as Kaggle's train/ is in every set."""
    root = Path(folder).resolve()
    return f"{root.parent.name}{sep}{root.name}"


def folder_slug(folder: str | Path) -> str:
    """``folder_label`` for a file name: 'dogs-vs-cats-small_train', any run of other characters than letters,
    digits and '._-' as one '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", folder_label(folder, "_"))


def scan_labelled(folder, classes, echo=print) -> FolderListing:
    """New labelled data to evaluate a run on: it must hold only the run's ``classes``; what it leaves out is
    said through ``echo``."""
    listing = scan_folder(folder, min_classes=1)
    if unknown := sorted(set(listing.classes) - set(classes)):  # those alone: the others are the run's
        raise FolderError(
            listing.kaggle_inside(classes)
            or f"{folder}: {', '.join(unknown)}: not among the run's classes ({', '.join(map(str, classes))})"
        )
    if note := listing.ignored_note():
        echo(note)
    return listing


def check_class_names(root: Path, files: list[Path], labels: list[int], classes: tuple[str, ...], layout: str):
    """Refuse classes that look like naming slips rather than classes, naming the files and the classes.

    Classes that differ only in case (``Dog.9.jpg`` beside ``dog.*.jpg``) are refused rather than folded
    together: folding would guess the label of a misnamed file silently, and on a case-sensitive file system
    ``Dog`` and ``dog`` may be meant apart; a rename settles it. In Kaggle's layout, where every file name
    carries its label, a class of one file is a misnamed file far more often than a class."""
    per_label = Counter(labels)
    counts = {c: per_label[i] for i, c in enumerate(classes)}
    listed = ", ".join(f"{c} ({n})" for c, n in counts.items())
    folds = Counter(c.casefold() for c in classes)
    if (clash := next((c.casefold() for c in classes if folds[c.casefold()] > 1), None)) is not None:
        names = [c for c in classes if c.casefold() == clash]
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
    im = to_rgb(open_image(path, shorter_side=size))
    w, h = im.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    if new[0] * new[1] > 4 * size * size:  # a banner: resample the crop's source box alone, not a huge strip
        sx, sy = w / new[0], h / new[1]
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR, box, reducing_gap=2.0), dtype=np.uint8)
    im = im.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
