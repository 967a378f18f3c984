import gzip

import numpy as np
import pytest

from cnnlab.data.idx import IdxError, read_idx, read_images_and_labels, write_idx


def test_round_trip_raw_and_gzip(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    for name in ("a-images-idx3-ubyte", "a-images-idx3-ubyte.gz"):
        write_idx(tmp_path / name, images)
        assert np.array_equal(read_idx(tmp_path / name, 2051), images)


def test_gzip_is_told_by_content_not_name(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    write_idx(tmp_path / "labels", labels, compress=True)
    assert np.array_equal(read_idx(tmp_path / "labels", 2049), labels)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_wrong_magic_names_the_file(tmp_path):
    write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8))
    with pytest.raises(IdxError, match=r"labels\.gz: wrong magic number 2049 \(expected 2051\)"):
        read_idx(tmp_path / "labels.gz", 2051)


def test_truncated_data_is_reported_with_sizes(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 28, 28), np.uint8))
    data = (tmp_path / "img").read_bytes()
    _write(tmp_path / "img", data[:-100])
    with pytest.raises(IdxError, match=r"img: truncated: 2,268 bytes for dimensions \(3, 28, 28\), expected 2,368"):
        read_idx(tmp_path / "img")


def test_trailing_bytes_are_an_error(tmp_path):
    write_idx(tmp_path / "lab", np.zeros(4, np.uint8))
    _write(tmp_path / "lab", (tmp_path / "lab").read_bytes() + b"xx")
    with pytest.raises(IdxError, match="trailing bytes"):
        read_idx(tmp_path / "lab")


def test_truncated_gzip_is_reported(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((10, 28, 28), np.uint8))
    data = (tmp_path / "x.gz").read_bytes()
    _write(tmp_path / "x.gz", data[: len(data) // 2])
    with pytest.raises(IdxError, match=r"x\.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_not_idx_and_too_short(tmp_path):
    with pytest.raises(IdxError, match="not an IDX file"):
        read_idx(_write(tmp_path / "html", b"<html>not found</html>"))
    with pytest.raises(IdxError, match="too short"):
        read_idx(_write(tmp_path / "tiny", b"\x00\x00"))
    with pytest.raises(IdxError, match="truncated header"):
        read_idx(_write(tmp_path / "hdr", bytes([0, 0, 8, 3, 0, 0])))
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(tmp_path / "missing")


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_idx(tmp_path / "i.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "l.gz", np.zeros(4, np.uint8))
    with pytest.raises(IdxError, match=r"l\.gz: 4 labels for 5 images"):
        read_images_and_labels(tmp_path / "i.gz", tmp_path / "l.gz")


def test_real_mnist_files_read_exactly(real_data_dir):
    images = read_idx(real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", 2051)
    assert images.shape == (10_000, 28, 28)
    raw = gzip.decompress((real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert images.tobytes() == raw[16:]
