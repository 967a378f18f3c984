"""Decode a folder of images once into a uint8 cache on disk; read raw pixels every epoch after that.

The cache is one memory-mapped array (N, S, S, 3) beside an index (``index.json``) of the source files
with their sizes and modification times, the preprocessing (size, resize method) and the files that
could not be read. It is rebuilt, with a progress bar, whenever any of that changes: a file added,
removed or touched, another size. Decoding runs on a thread pool (Pillow releases the GIL), at reduced
size where the JPEG codec allows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .folders import BadImage, FolderListing, decode

CACHE_VERSION = 1
RESIZE = "shorter-side bilinear + centre crop, JPEG draft"


@dataclass
class ImageCache:
    folder: Path
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped read-only
    labels: np.ndarray | None  # (N,) int64
    files: list[str]  # names relative to the source folder, in cache order
    classes: tuple[str, ...]
    skipped: list[str]  # one message per unreadable file
    mean: tuple[float, float, float]  # per-channel mean of the cached pixels, in [0, 1] units
    rebuilt: bool


def cache_key(listing: FolderListing, size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, size, RESIZE, str(listing.root.resolve())]).encode())
    for path in listing.files:
        st = path.stat()
        h.update(f"{path.relative_to(listing.root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab" / "images"


def open_cache(
    listing: FolderListing,
    size: int = 256,
    cache_root=None,
    workers: int | None = None,
    progress: bool = True,
    echo=print,
) -> ImageCache:
    """The cache of ``listing`` at ``size``, built or rebuilt first when it is missing or stale."""
    root = Path(cache_root) if cache_root else default_cache_root()
    slot = hashlib.sha256(str(listing.root.resolve()).encode()).hexdigest()[:12]
    folder = root / f"{listing.root.name}-{slot}-{size}"
    key = cache_key(listing, size)
    index_path = folder / "index.json"
    rebuilt = False
    index = _read_index(index_path)
    if index is None or index.get("key") != key:
        reason = "no cache yet" if index is None else "the source files or the preprocessing changed"
        echo(f"decoding {len(listing.files):,} images of {listing.root} into {folder} ({reason})")
        _build(listing, size, folder, key, workers, progress)
        index = _read_index(index_path)
        rebuilt = True
    n = len(index["files"])
    images = (
        np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=(n, size, size, 3))
        if n
        else np.zeros((0, size, size, 3), np.uint8)
    )
    labels = np.asarray(index["labels"], dtype=np.int64) if index["labels"] is not None else None
    for message in index["skipped"]:
        warnings.warn(f"skipped: {message}", stacklevel=2)
    return ImageCache(
        folder, images, labels, index["files"], tuple(index["classes"]), index["skipped"], tuple(index["mean"]), rebuilt
    )


def _read_index(path: Path):
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    data = path.parent / "images.u8"
    expected = len(index.get("files", [])) * index.get("size", 0) ** 2 * 3
    if not data.exists() or data.stat().st_size != expected:
        return None  # a half-written or damaged cache is rebuilt, never read
    return index


def _build(listing: FolderListing, size: int, folder: Path, key: str, workers, progress: bool) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    n = len(listing.files)
    out = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(max(n, 1), size, size, 3))
    kept_files, kept_labels, skipped = [], [], []
    channel_sums = np.zeros(3, np.float64)

    def work(path):
        try:
            return decode(path, size), None
        except BadImage as e:
            return None, str(e)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        results = pool.map(work, listing.files)
        bar = tqdm(results, total=n, desc="decoding", unit="img", disable=not progress, dynamic_ncols=True)
        for i, (pixels, error) in enumerate(bar):
            if error:
                skipped.append(error)  # warned about, by name, each time the cache is opened
                continue
            out[len(kept_files)] = pixels
            channel_sums += pixels.reshape(-1, 3).sum(axis=0)
            kept_files.append(str(listing.files[i].relative_to(listing.root)))
            if listing.labels is not None:
                kept_labels.append(listing.labels[i])
    out.flush()
    del out
    count = len(kept_files)
    with open(tmp / "images.u8", "r+b") as f:  # drop the slots of skipped files
        f.truncate(count * size * size * 3)
        f.flush()
        os.fsync(f.fileno())
    mean = (channel_sums / max(count * size * size, 1) / 255.0).tolist()
    index = {
        "key": key,
        "version": CACHE_VERSION,
        "size": size,
        "resize": RESIZE,
        "source": str(listing.root),
        "files": kept_files,
        "labels": kept_labels if listing.labels is not None else None,
        "classes": list(listing.classes),
        "skipped": skipped,
        "mean": mean,
        "layout": listing.layout,
    }
    (tmp / "index.json").write_text(json.dumps(index))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
