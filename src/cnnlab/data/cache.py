"""Decode a folder of images once into a uint8 cache on disk; read raw pixels every epoch after that.

The cache is one memory-mapped array (N, S, S, 3) beside an index (``index.json``) of the source files
with their sizes and modification times, the preprocessing (size, resize method) and the files that
could not be read. It is rebuilt, with a progress bar and its ETA, whenever any of that changes: a file
added, removed or touched, another size.

A build decodes on a thread per core (Pillow releases the GIL while it decodes and resizes); each thread
writes its images straight into the memory-mapped file, so no decoded image waits in memory, and at most a
few tasks per thread are queued: the memory a build needs does not grow with the number of images. It
writes into ``<cache>.partial`` under a lock, and the finished folder is renamed into place, so a build
killed part-way is never read: the next one removes it and starts again. The disk space is checked first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..checkpoint import atomic_write_bytes
from ..errors import DataError
from .datasets import cache_dir
from .folders import FolderListing, decode
from .images import ImageError

CACHE_VERSION = 2  # 2: images upright by their EXIF orientation; a banner resampled in its crop's box
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
        # os.fsencode: a name that is not UTF-8 (from a latin-1 zip) is bytes the OS holds, not an error
        h.update(os.fsencode(path.relative_to(listing.root)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def open_cache(
    listing: FolderListing,
    size: int = 256,
    cache_root=None,
    workers: int | None = None,
    progress: bool = True,
    echo=print,
) -> ImageCache:
    """The cache of ``listing`` at ``size``, built or rebuilt first when it is missing or stale. Its ``skipped``
    names the files that did not decode, for the caller to report where it reports the data (a run's notes, an
    evaluation's report, a submission's output), once."""
    root = Path(cache_root) if cache_root else cache_dir() / "images"
    slot = hashlib.sha256(str(listing.root.resolve()).encode()).hexdigest()[:12]
    folder = root / f"{Path(os.path.abspath(listing.root)).name}-{slot}-{size}"  # '.' by its name; a link as named
    key = cache_key(listing, size)
    index = _read_index(folder)
    rebuilt = index is None or index.get("key") != key
    if rebuilt:
        with _build_lock(folder):  # one build at a time: a process that waited here finds it built
            index = _read_index(folder)
            if index is None or index.get("key") != key:
                reason = "no cache yet" if index is None else "the source files or the preprocessing changed"
                _build(listing, size, folder, key, workers, progress, lambda n: echo(f"{n} ({reason})"))
                index = _read_index(folder)
    shape = (len(index["files"]), size, size, 3)
    # np.memmap refuses an empty file: a folder whose every file was skipped gives an empty array
    images = np.memmap(folder / "images.u8", np.uint8, mode="r", shape=shape) if shape[0] else np.zeros(shape, np.uint8)
    labels = np.asarray(index["labels"], dtype=np.int64) if index["labels"] is not None else None
    return ImageCache(
        folder, images, labels, index["files"], tuple(index["classes"]), index["skipped"], tuple(index["mean"]), rebuilt
    )


def _read_index(folder: Path):
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    data = folder / "images.u8"
    expected = len(index.get("files", [])) * index.get("size", 0) ** 2 * 3
    if not data.exists() or data.stat().st_size != expected:
        return None  # a damaged cache is rebuilt, never read
    return index


@contextmanager
def _build_lock(folder: Path):
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder.with_name(folder.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as e:
        raise DataError(
            f"cannot write the image cache in {folder.parent} ({e.strerror}); "
            "choose another folder with --cache-dir DIR"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _build(listing: FolderListing, size: int, folder: Path, key: str, workers, progress: bool, echo) -> None:
    """Decode ``listing`` into ``folder`` (the caller holds the build lock)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a build killed part-way: started again, never read
    shutil.rmtree(folder, ignore_errors=True)  # stale; its space goes to the new one
    n = len(listing.files)
    need = n * size * size * 3
    free = shutil.disk_usage(folder.parent).free
    if need > free:
        raise DataError(
            f"the image cache needs {need / 1e9:.2f} GB in {folder.parent}, which has {free / 1e9:.2f} GB free; "
            "choose another folder with --cache-dir DIR"
        )
    echo(f"decoding {n:,} images of {listing.root} into {folder}, {need / 1e9:.2f} GB")
    partial.mkdir()
    out = np.memmap(partial / "images.u8", dtype=np.uint8, mode="w+", shape=(max(n, 1), size, size, 3))
    ok, skipped, sums = _decode_into(out, listing.files, size, workers, progress)
    kept = np.flatnonzero(ok)
    for j in np.flatnonzero(kept != np.arange(len(kept))):  # close the gaps that skipped files left
        out[j] = out[kept[j]]
    out.flush()
    del out
    count = len(kept)
    with open(partial / "images.u8", "r+b") as f:
        f.truncate(count * size * size * 3)
        os.fsync(f.fileno())
    index = {
        "key": key,
        "version": CACHE_VERSION,
        "size": size,
        "resize": RESIZE,
        "source": str(listing.root),
        "files": [str(listing.files[i].relative_to(listing.root)) for i in kept],
        "labels": [listing.labels[i] for i in kept] if listing.labels is not None else None,
        "classes": list(listing.classes),
        "skipped": skipped,  # named by whoever reports the data, each time the cache is opened
        "mean": (sums / max(count * size * size, 1) / 255.0).tolist(),
        "layout": listing.layout,
    }
    atomic_write_bytes(partial / "index.json", json.dumps(index).encode())
    os.replace(partial, folder)


def _decode_into(out: np.ndarray, files: list[Path], size: int, workers, progress: bool):
    """Decode ``files[i]`` into ``out[i]`` on a thread per core: (which were read, one message per file that
    was not, the per-channel pixel sums). At most a few tasks per thread wait, so memory stays flat."""
    n, workers = len(files), workers or os.cpu_count() or 2
    ok = np.zeros(n, dtype=bool)
    sums = np.zeros(3, np.float64)
    errors: dict[int, str] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            pixels = decode(files[i], size)
        except ImageError as e:
            errors[i] = str(e)
            return
        out[i] = pixels
        total = pixels.reshape(-1, 3).sum(axis=0, dtype=np.uint64)
        with lock:
            sums[:] += total
        ok[i] = True

    bar = tqdm(total=n, desc="decoding", unit="img", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=workers) as pool, bar:
        pending: deque = deque()
        for i in range(n):
            pending.append(pool.submit(work, i))
            if len(pending) >= 4 * workers:
                pending.popleft().result()  # re-raises a worker's unexpected error here
                bar.update()
        for future in pending:
            future.result()
            bar.update()
    return ok, [errors[i] for i in sorted(errors)], sums
