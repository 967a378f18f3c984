"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

The format: two zero bytes, a type code, the number of dimensions, then each dimension as a big-endian
32-bit integer, then the data. MNIST's images have magic 2051 (unsigned bytes, 3 dimensions) and its
labels 2049 (unsigned bytes, 1 dimension). Every check names the file, so a truncated download or a
swapped file reads as one clear line instead of a reshape error deep in numpy.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(DataError):
    """A file is not a valid IDX file of the expected kind; the message names the file."""


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when it is gzip (told by its first bytes, not its name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise IdxError(f"{path}: cannot read ({e.strerror or e})") from None
    return decompress(raw, str(path))


def decompress(data: bytes, name: str) -> bytes:
    """``data`` itself, or its gunzipped content when it starts with gzip's magic bytes."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise IdxError(f"{name}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """An IDX file as a read-only numpy array, its magic number and size checked."""
    data, name = read_bytes(path), str(path)
    if len(data) < 4:
        raise IdxError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise IdxError(f"{name}: not an IDX file (magic number {magic})")
    if expected_magic is not None and magic != expected_magic:
        raise IdxError(f"{name}: wrong magic number {magic} (expected {expected_magic}); is it the right file?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: truncated header ({len(data)} bytes, {ndim} dimensions announced)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxError(f"{name}: {kind}: {len(data):,} bytes for dimensions {dims}, expected {expected:,}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8) as IDX; gzip-compressed when the name ends in .gz (or ``compress``)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def read_images_and_labels(
    images_path: str | Path, labels_path: str | Path, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A pair of IDX files: images (N, H, W) uint8 and labels (N,) uint8, with matching counts and, given
    ``num_classes``, every label a class index."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1:
        raise IdxError(
            f"{images_path}, {labels_path}: expected images (N, H, W) and labels (N,), got "
            f"{images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise IdxError(f"{labels_path}: {len(labels):,} labels for {len(images):,} images in {images_path}")
    if num_classes is not None and len(labels) and int(labels.max()) >= num_classes:
        first = int(np.flatnonzero(labels >= num_classes)[0])
        raise IdxError(
            f"{labels_path}: label {int(labels[first])} at position {first:,} is not a class "
            f"(labels are 0..{num_classes - 1})"
        )
    return images, labels
