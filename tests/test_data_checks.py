"""Checks that depend on the data are made in the data layer, where the fact is known, before any file is
written: one line naming the file, option or value (exit 2), never a library's traceback, never a silent
substitute, and nothing in the folder left out without a word."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import synthetic_digits, write_synthetic_mnist
from PIL import Image
from sklearn.model_selection import train_test_split

from cnnlab.cli import main
from cnnlab.data.datasets import stratified_split
from cnnlab.data.folders import scan_folder
from cnnlab.data.idx import write_idx
from cnnlab.errors import DataError


def refused(capsys, tmp_path, *args) -> str:
    """The one line a refused ``cnnlab train ...`` prints; no run directory is left behind."""
    assert main(["train", *args, "--out-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    return err


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")


def test_a_split_that_leaves_a_side_empty_names_the_option(offline, capsys, tmp_path):
    data = write_synthetic_mnist(tmp_path / "data")
    err = refused(capsys, tmp_path, "lenet5", "--data-dir", str(data), "--val-split", "0.9999")
    assert "--val-split 0.9999 holds out 600 of 600 images and leaves 0 to train on" in err


def test_a_class_of_one_image_is_refused_before_decoding(capsys, tmp_path):
    folder = tmp_path / "photos"
    for name, count in (("cat", 6), ("dog", 1)):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (40, 40), (9 * i, 0, 0)).save(folder / name / f"{i}.png")
    cache = tmp_path / "cache"
    err = refused(capsys, tmp_path, "alexnet_bn", "--data", str(folder), "--cache-dir", str(cache))
    assert f"{folder}: --val-split 0.1" in err and "class 'dog' has a single image" in err
    assert not cache.exists()  # refused from the listing, before any image was decoded


@pytest.mark.parametrize("counts", [(2, 3, 5), (1, 4, 5), (2, 2)])
def test_stratified_split_refuses_exactly_what_scikit_learn_would(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    for fraction in (0.05, 0.2, 0.3, 0.5, 0.7, 0.75, 0.95):
        try:
            train_test_split(labels, test_size=fraction, stratify=labels, random_state=0)
            sklearn_refuses = False
        except ValueError:
            sklearn_refuses = True
        try:
            stratified_split(torch.from_numpy(labels), fraction, 0)
            refuses = False
        except DataError:
            refuses = True
        assert refuses == sklearn_refuses, (counts, fraction)


def test_idx_labels_outside_the_classes_name_the_file(offline, capsys, tmp_path):
    data = write_synthetic_mnist(tmp_path / "data")
    labels_file = data / "mnist" / "train-labels-idx1-ubyte.gz"
    _, labels = synthetic_digits(600, 1)
    labels[17] = 255
    write_idx(labels_file, labels)
    err = refused(capsys, tmp_path, "lenet5", "--data-dir", str(data))
    assert f"{labels_file}: label 255 at position 17 is not a class (labels are 0..9)" in err


def test_data_dir_missing_the_test_split_is_refused_not_filled_from_elsewhere(offline, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(write_synthetic_mnist(tmp_path / "complete")))
    partial = write_synthetic_mnist(tmp_path / "partial") / "mnist"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (partial / name).unlink()
    err = refused(capsys, tmp_path, "lenet5", "--data-dir", str(partial))
    assert f"--data-dir {partial}: no mnist test split (t10k-images-idx3-ubyte[.gz] and " in err
    assert "with --data-dir only that folder is used" in err


def test_everything_left_out_of_an_image_folder_is_counted_and_named(tmp_path):
    root = tmp_path / "photos"
    for name in ("cat", "dog"):
        (root / name / "more").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20)).save(root / name / f"{i}.jpg")
    Image.new("RGB", (20, 20)).save(root / "cat" / "more" / "deep.jpg")
    (root / "cat" / "scan.heic").write_bytes(b"x")
    (root / "README.txt").write_text("about")
    (root / "empty").mkdir()
    (root / ".DS_Store").write_text("")
    listing = scan_folder(root)
    assert listing.classes == ("cat", "dog") and len(listing.files) == 7  # cat/more/deep.jpg is a cat, as in Keras
    assert listing.ignored == ["README.txt", "cat/scan.heic", "empty/"]
    note = listing.ignored_note()
    assert note.startswith(f"{root}: left out 3 entries that are not images of the subfolders layout (")
    assert note.endswith("README.txt, cat/scan.heic, empty/")
    flat = tmp_path / "kaggle"
    for i in range(2):
        for name in ("cat", "dog"):
            (flat / "extra").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20)).save(flat / f"{name}.{i}.png")
    assert scan_folder(flat).ignored == ["extra/"]  # a subfolder beside Kaggle's names: said, not read


def _photos(folder, counts=(("cat", 4), ("dog", 4))):
    for name, count in counts:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (40, 40), (9 * i, 60, 0)).save(folder / name / f"{i}.png")
    return folder


@pytest.mark.parametrize("how", ["same folder", "a link to it", "linked class folders", "hard links"])
def test_validation_images_that_are_training_images_are_refused(capsys, tmp_path, how):
    """--val-dir naming the training folder, a link to it, or files linked to its files would validate on training
    images: refused, naming a shared image, before anything is decoded."""
    data = _photos(tmp_path / "photos")
    val = tmp_path / "val"
    if how == "same folder":
        val = data
    elif how == "a link to it":
        val.symlink_to(data, target_is_directory=True)
    else:
        for name in ("cat", "dog"):
            if how == "linked class folders":
                val.mkdir(exist_ok=True)
                (val / name).symlink_to(data / name, target_is_directory=True)
            else:
                (val / name).mkdir(parents=True)
                for image in (data / name).iterdir():
                    os.link(image, val / name / image.name)
    cache = tmp_path / "cache"
    err = refused(capsys, tmp_path, "alexnet_bn", "--data", str(data), "--val-dir", str(val), "--cache-dir", str(cache))
    assert "a validation image" in err and "also a training image" in err and "8 of 8 are" in err
    assert not cache.exists()


def test_a_validation_folder_of_other_images_is_taken(tmp_path):
    """The check compares files, not names: another folder with the same file names is fine."""
    from cnnlab.data.imagedata import check_disjoint

    train, val = _photos(tmp_path / "a"), _photos(tmp_path / "b")
    check_disjoint(scan_folder(train), scan_folder(val))  # no error
