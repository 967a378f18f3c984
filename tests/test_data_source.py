"""One contract for every data source (data/source.py): arrays, IDX datasets and image folders answer the same
questions the same way, and their sharding across processes adds up to exactly one process's data."""

from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest
import torch
from conftest import synthetic_digits, write_synthetic_mnist
from PIL import Image

from cnnlab.augment import Augment
from cnnlab.data import ArraySource, DataSource, IdxSource, InputNorm, Preprocess, Shard, imagedata, read_file
from cnnlab.data.imagedata import FolderSource, to_device
from cnnlab.data.loader import interleave
from cnnlab.errors import UsageError
from cnnlab.train import TrainConfig


def array_source(tmp_path) -> ArraySource:
    images, labels = synthetic_digits(90, seed=3)
    return ArraySource.from_arrays(images, labels, validation_data=synthetic_digits(30, seed=4))


def idx_source(tmp_path) -> IdxSource:
    data = write_synthetic_mnist(tmp_path / "data")
    return IdxSource.open(TrainConfig(data_dir=str(data), val_split=0.2), allow_sample=False)


def folder_source(tmp_path) -> FolderSource:
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(15):
        for name in ("cat", "dog"):
            Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / f"{name}.{i}.png")
    cfg = TrainConfig(
        dataset="folder", data=str(folder), image_size=36, crop=32, cache_dir=str(tmp_path / "cache"), progress=False
    )
    return FolderSource.open(cfg, echo=lambda *a: None)


SOURCES = {"arrays": array_source, "idx": idx_source, "folder": folder_source}


@pytest.fixture(params=list(SOURCES))
def source(request, tmp_path) -> DataSource:
    return SOURCES[request.param](tmp_path)


def checksums(images: torch.Tensor) -> list[int]:
    weights = torch.arange(1, images[0].numel() + 1, dtype=torch.int64)
    return (images.flatten(1).long() @ weights).tolist()


def test_source_answers_the_interface(source):
    assert isinstance(source, DataSource)
    c, h, w = source.image_size
    for split in ("train", "val", "test"):
        n = source.size(split)
        assert n > 0 and len(source.labels(split)) == n
        assert source.labels(split).dtype == torch.int64 and int(source.labels(split).max()) < len(source.classes)
    picture = source.images("val", [0, 1])
    assert picture.dtype == torch.uint8 and picture.shape == (2, c, h, w)
    norm = source.input_norm()
    assert isinstance(norm, InputNorm) and len(norm.mean) == c
    json.dumps(source.describe())  # saved in model.json
    groups = source.eval_views()
    assert groups and all(views for views in groups.values())
    with pytest.raises(ValueError, match="split"):
        source.size("nope")


def test_a_split_the_data_lacks_is_refused_in_one_wording_for_every_kind(source):
    source.splits["val"] = None  # as arrays given without validation_data, or a folder opened for prediction
    assert source.size("val") == 0
    with pytest.raises(UsageError, match=rf"^{re.escape(source.name)}: no 'val' split$"):
        source.labels("val")


def test_a_training_epoch_visits_every_image_once_in_a_seeded_order(source):
    loader = source.loader("train", 8, "cpu", train=True, seed=7)
    batches = list(loader.epoch(0))
    seen = torch.cat([labels for _, labels in batches])
    assert len(batches) == len(loader) and len(seen) == source.size("train")
    assert sorted(seen.tolist()) == sorted(source.labels("train").tolist())
    again = [b[0] for b in loader.epoch(0)]
    other = [b[0] for b in loader.epoch(1)]
    assert all(torch.equal(a, b[0]) for a, b in zip(again, batches))  # (seed, epoch) decides the order
    assert not all(torch.equal(a, b) for a, b in zip(again, other))
    resumed = [b[0] for b in loader.epoch(0, start=2)]
    assert all(torch.equal(a, b) for a, b in zip(resumed, again[2:]))  # any step can be replayed


@pytest.mark.parametrize("world", [2, 3])
def test_shards_of_each_global_batch_add_up_to_one_process(source, world):
    one = list(source.loader("train", 12, "cpu", train=True, seed=1).epoch(0))
    shards = [
        list(source.loader("train", 12, "cpu", train=True, seed=1, shard=Shard(r, world)).epoch(0))
        for r in range(world)
    ]
    assert all(len(s) == len(one) or len(s) == len(one) - 1 for s in shards)
    for step, (images, _) in enumerate(one[: len(shards[0])]):
        parts = [checksums(s[step][0]) for s in shards]
        assert sorted(sum(parts, [])) == sorted(checksums(images))  # the same images in the global batch
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_evaluation_gathers_every_image_once_in_order(source, world):
    for view in [None, *[v for views in source.eval_views().values() for v in views][:2]]:
        whole = torch.cat([x for x, _ in source.loader("test", 5, "cpu", view=view).epoch(0)])
        parts = [
            torch.cat([x for x, _ in source.loader("test", 5, "cpu", view=view, shard=Shard(r, world)).epoch(0)])
            for r in range(world)
        ]
        assert len({len(p) for p in parts}) == 1  # padded alike, as all_gather needs
        assert torch.equal(interleave(parts, source.size("test")), whole)


def test_a_file_is_read_as_the_source_prepares_its_images(tmp_path):
    folder = folder_source(tmp_path)
    read = read_file(folder.describe())
    path = tmp_path / "photos" / "cat.0.png"
    assert read(path).shape == folder.image_size and read(path).dtype == torch.uint8
    arrays = array_source(tmp_path)
    Image.fromarray(np.full((56, 40), 200, np.uint8)).save(tmp_path / "digit.png")
    assert read_file(arrays.describe())(tmp_path / "digit.png").shape == arrays.image_size


def test_keras_style_arrays_in_any_layout():
    images, labels = synthetic_digits(20, seed=1)
    nhwc = ArraySource.from_arrays(images[..., None], labels)
    floats = ArraySource.from_arrays(images[:, None].astype(np.float32) / 255, labels)
    assert torch.equal(nhwc.splits["train"].images, floats.splits["train"].images)
    assert nhwc.image_size == (1, 28, 28)
    with pytest.raises(ValueError, match="0..1"):
        ArraySource.from_arrays(images.astype(np.float32), labels)
    with pytest.raises(ValueError, match="\\(N, H, W\\)"):
        ArraySource.from_arrays(images.reshape(20, -1), labels)


def test_rgba_arrays_are_read_channels_last_as_keras_reads_them():
    """(N, H, W, 4) arrays were taken as H channels; Augment took them as images without a word."""
    rgba = np.random.default_rng(0).integers(0, 256, (6, 10, 12, 4), dtype=np.uint8)
    labels = np.arange(6) % 2
    channels_first = torch.from_numpy(rgba).permute(0, 3, 1, 2)
    for x in (rgba, channels_first):  # (N, 4, H, W) stays as it is
        source = ArraySource.from_arrays(x, labels)
        assert source.image_size == (4, 10, 12) and torch.equal(source.splits["train"].images, channels_first)
    with pytest.raises(UsageError, match=r"must be \(N, C, H, W\), got shape \(6, 10, 12, 4\)"):
        Augment(rotation_range=10)(torch.from_numpy(rgba))


def test_keras_style_labels_and_what_is_not_an_array_of_images():
    """As Keras reads labels: whole floats are classes, and a class the training slice lacks may be in the
    validation data (labels 0..K-1, not the classes x happens to hold). What is not numbers, empty or of another
    length than its labels is one line naming it, not an error from deep inside numpy or torch."""
    images, labels = synthetic_digits(20, seed=1)
    as_floats = ArraySource.from_arrays(images, labels.astype(np.float32))
    assert torch.equal(as_floats.splits["train"].labels, torch.from_numpy(labels).long())
    without_top = labels < labels.max()
    source = ArraySource.from_arrays(images[without_top], labels[without_top], (images, labels))
    assert source.classes == tuple(str(i) for i in range(labels.max() + 1))
    assert source.splits["val"].classes == source.classes
    assert ArraySource.from_arrays(images, labels % 2 == 1).classes == ("0", "1")  # booleans: two classes
    for x, y, message in [
        (images[:0], labels[:0], "x: no images"),
        (None, labels, "x: images must be an array of numbers, got NoneType"),
        (images, labels.astype(str), "y: labels must be an array of numbers"),
        (images, labels + 0.5, "y: labels must be class indices 0..K-1, got"),
        (images, np.where(labels == 0, np.inf, labels), "y: labels must be class indices 0..K-1, got inf"),
        (np.repeat(images, 10, axis=0), np.eye(10)[labels], "x holds 200 images and y labels of shape (20, 10)"),
        (images[:10], np.eye(10)[labels], "x holds 10 images and y labels of shape (20, 10)"),
        ([images[0], images[0][:5]], labels[:2], "x: images of different shapes"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            ArraySource.from_arrays(x, y)


def test_augmentation_draws_per_image_of_the_global_batch_whatever_the_shard():
    images, _ = synthetic_digits(12, seed=2)
    x = torch.from_numpy(images).unsqueeze(1)
    pre = Preprocess(InputNorm((0.1,), (0.3,)), "cpu", channels_last=False, augment=Augment.lesson())
    whole = pre(x, torch.Generator().manual_seed(5))
    for world in (2, 3):
        for rank in range(world):
            rows = Shard(rank, world).rows(12)
            part = pre(x[rows], torch.Generator().manual_seed(5), draw=12, rows=rows)
            assert torch.allclose(part, whole[rows], atol=1e-5)


def test_fit_takes_keras_style_arrays():
    from cnnlab import create_model, fit

    images, labels = synthetic_digits(256, seed=1)
    val_images, val_labels = synthetic_digits(64, seed=2)
    cfg = TrainConfig(epochs=2, batch_size=32, progress=False, ema=0.0, warmup=0.0, lr=3e-3)
    history = fit(create_model("lenet5"), (images, labels), (val_images, val_labels), cfg)
    assert history.history["val_accuracy"][-1] > 0.5  # bars in ten positions: learnt, far beyond chance (0.1)


def test_a_folders_batches_are_cut_ahead_and_an_error_there_reaches_the_loop(tmp_path, monkeypatch):
    loader = folder_source(tmp_path).loader("train", 4, "cpu", train=True, seed=1)
    cut_here = [checksums(to_device(x, "cpu")) for x, _ in loader._batches(0, 0)]  # cut here, one by one
    assert [checksums(x) for x, _ in loader.epoch(0)] == cut_here and len(cut_here) == len(loader)
    threads = threading.active_count()
    batches = loader.epoch(1)
    next(batches)
    assert threading.active_count() == threads + 1
    batches.close()  # a loop left early: the cutting thread is gone, not left waiting
    assert threading.active_count() == threads

    cut, calls = imagedata.crop_batch, []

    def fails_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the cache file went away")
        return cut(*args)

    monkeypatch.setattr(imagedata, "crop_batch", fails_second)
    with pytest.raises(OSError, match="the cache file went away"):
        for _ in loader.epoch(2):
            pass
