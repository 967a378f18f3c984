"""Image folders: layouts and labels, every kind of odd or broken file, the decoded cache and its rebuild
rule, the crops (10-crop geometry), and a Kaggle submission from a trained run."""

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.cache import open_cache
from cnnlab.data.folders import FolderError, decode, folder_label, folder_slug, scan_folder, scan_labelled
from cnnlab.data.imagedata import TEN_VIEWS, FolderSource, crop_batch, view_window
from cnnlab.data.images import ImageError, open_image
from cnnlab.runs import new_run_dir
from cnnlab.train import TrainConfig


def save(path, color=(200, 30, 30), size=(64, 48), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def folder_source(folder, tmp_path, **options) -> FolderSource:
    cfg = TrainConfig(
        dataset="folder", data=str(folder), image_size=40, crop=32, cache_dir=str(tmp_path / "cache"), progress=False
    )
    return FolderSource.open(cfg.updated(**options), echo=lambda *a: None)


@pytest.fixture
def kaggle(tmp_path):
    root = tmp_path / "train"
    for i in range(12):
        save(root / f"cat.{i}.jpg", (220, 40, 40))
        save(root / f"dog.{i}.jpg", (40, 40, 220), size=(48, 64))
    return root


def test_kaggle_labels_come_from_the_names(kaggle):
    listing = scan_folder(kaggle)
    assert listing.layout == "kaggle" and listing.classes == ("cat", "dog")
    names = [p.name for p in listing.files]
    assert names[:3] == ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"] and names.index("cat.10.jpg") == 10  # natural order
    assert all(
        listing.classes[label].startswith(p.name.split(".")[0]) for p, label in zip(listing.files, listing.labels)
    )
    with pytest.raises(FolderError, match=r"train: holds labelled names \(cat\.0\.jpg\); give the folder of"):
        scan_folder(kaggle, unlabelled=True)  # Kaggle's train/ given where its test1/ belongs (predict --kaggle)


def test_class_subfolders_and_unlabelled_folders(tmp_path):
    for cls in ("birds", "fish"):
        for i in range(3):
            save(tmp_path / "sub" / cls / f"img{i}.png")
    listing = scan_folder(tmp_path / "sub")
    assert (
        listing.layout == "subfolders" and listing.classes == ("birds", "fish") and listing.labels == [0] * 3 + [1] * 3
    )
    for i in (10, 2, 1):
        save(tmp_path / "test1" / f"{i}.jpg")
    unlabelled = scan_folder(tmp_path / "test1", unlabelled=True)
    assert unlabelled.labels is None and [p.name for p in unlabelled.files] == ["1.jpg", "2.jpg", "10.jpg"]


def test_new_labelled_data_names_only_the_classes_the_run_lacks(tmp_path):
    """An evaluation folder with one stray class names that one, not the run's own (it once said "classes cat,
    dog, fox are not the run's classes (cat, dog)")."""
    for name in ("cat", "dog", "fox"):
        save(tmp_path / "new" / name / "1.png")
    with pytest.raises(FolderError, match=r"new: fox: not among the run's classes \(cat, dog\)$"):
        scan_labelled(tmp_path / "new", ("cat", "dog"))
    assert scan_labelled(tmp_path / "new", ("cat", "dog", "fox", "owl")).classes == ("cat", "dog", "fox")


def test_kaggles_train_unzipped_into_a_folder_of_its_name_is_named_with_the_folder_to_give(kaggle, tmp_path):
    """unzip train.zip -d train gives train/train/cat.0.jpg: training said 'only one class (train) found' and evaluate
    'train: not among the run's classes (cat, dog)', neither saying where the images are or what to give instead."""
    outer = tmp_path / "outer"
    outer.mkdir()
    kaggle.rename(outer / "train")
    said = rf"outer: holds its images in train/, named as Kaggle's \(cat.0.jpg\): give that folder, {outer / 'train'}$"
    with pytest.raises(FolderError, match=said):
        scan_folder(outer)
    with pytest.raises(FolderError, match=said):
        scan_labelled(outer, ("cat", "dog"))
    for n in (1, 2):  # Kaggle's own folder: train/ beside test1/ (1.jpg) trained "test1 vs train" without a word
        save(outer / "test1" / f"{n}.jpg")
    with pytest.raises(FolderError, match=said):
        scan_folder(outer)
    for name in ("cat.1.jpg", "kitten.2.jpg"):  # one class of new data, its photos named otherwise: as it was
        save(tmp_path / "new" / "cat" / name)
    assert scan_labelled(tmp_path / "new", ("cat", "dog")).classes == ("cat",)
    for name in ("2020.01.05.png", "2021.03.02.png", "holiday.1.jpg", "garden.2.jpg"):  # dates, Kaggle-like names
        save(tmp_path / "photos" / "cat" / name)
    assert len(scan_labelled(tmp_path / "photos", ("cat", "dog")).files) == 4  # one of the run's classes: evaluated
    for name in ("holiday.1.jpg", "garden.2.jpg"):  # a class the run lacks, its photos named so: no Kaggle train/
        save(tmp_path / "birds" / "bird" / name)
    with pytest.raises(FolderError, match=r"birds: bird: not among the run's classes \(cat, dog\)$"):
        scan_labelled(tmp_path / "birds", ("cat", "dog"))


def test_folder_errors_name_the_folder_and_the_problem(tmp_path):
    cases = []
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "no images found"))
    cases.append((tmp_path / "missing", "no such folder"))
    save(tmp_path / "nolabels" / "IMG_001.jpg")
    save(tmp_path / "nolabels" / "IMG_002.jpg")
    cases.append((tmp_path / "nolabels", "cannot tell the labels: IMG_001.jpg is not named CLASS.N.ext"))
    save(tmp_path / "mixed" / "cat.1.jpg")
    save(tmp_path / "mixed" / "photo.jpg")  # one file without a label among labelled ones
    cases.append((tmp_path / "mixed", "cannot tell the labels: photo.jpg"))
    save(tmp_path / "dated" / "2020.01.05.jpg")  # CLASS.N.ext in shape, but numbers: no classes (was StopIteration)
    save(tmp_path / "dated" / "2021.03.02.jpg")
    cases.append((tmp_path / "dated", "cannot tell the labels: 2020.01.05.jpg is not named CLASS.N.ext"))
    save(tmp_path / "one" / "cat.1.jpg")
    save(tmp_path / "one" / "cat.2.jpg")
    cases.append((tmp_path / "one", "only one class (cat) found"))
    save(tmp_path / "afile.jpg")
    cases.append((tmp_path / "afile.jpg", "not a folder"))
    for folder, message in cases:
        with pytest.raises(FolderError, match=re.escape(message)) as info:
            scan_folder(folder)
        assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_odd_modes_all_become_rgb(tmp_path):
    grey = save(tmp_path / "grey.png", 128, mode="L")
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(rgba)  # fully transparent red: white after compositing
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    sixteen = tmp_path / "16bit.png"
    Image.fromarray(np.full((40, 40), 65535 // 2, np.uint16)).save(sixteen)
    palette = tmp_path / "palette.png"
    Image.new("RGB", (40, 40), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(palette)
    expected = {
        grey: (128, 128, 128),
        rgba: (255, 255, 255),
        cmyk: (255, 0, 0),
        sixteen: (128, 128, 128),
        palette: (0, 200, 0),
    }
    for path, colour in expected.items():
        pixels = decode(path, 32)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8, path.name
        assert np.abs(pixels[16, 16].astype(int) - colour).max() <= 3, (path.name, pixels[16, 16])


def test_broken_files_are_refused_by_name(tmp_path):
    good = save(tmp_path / "good.jpg", size=(300, 200))
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("L", (9000, 6000)).save(tmp_path / "bomb.png")  # 54M pixels, a few KB on disk
    (tmp_path / "folder.jpg").mkdir()
    cases = {
        "folder.jpg": "a folder, not an image file",
        "zero.jpg": "empty file",
        "text.jpg": "not an image",
        "truncated.jpg": "unreadable or truncated",
        "bomb.png": "decompression bomb",
    }
    for name, message in cases.items():
        with pytest.raises(ImageError, match=re.escape(message)) as info:
            decode(tmp_path / name, 64)
        assert str(tmp_path / name) in str(info.value)
    assert decode(good, 64).shape == (64, 64, 3)


def test_a_108_megapixel_phone_jpeg_is_decoded_small_not_refused_as_a_bomb(tmp_path):
    """A phone's 108 MP photo (12000x9000) was skipped as a decompression bomb, and so was a 61 MP camera's
    ('too large'): a folder of them had no readable images. A JPEG is decoded at up to 1/8 of its size for the
    cache, so the limit counts the pixels decoded; decoded in full it is still refused, as a PNG that size is."""
    Image.new("L", (12000, 9000), 90).save(tmp_path / "phone.jpg")
    assert np.abs(decode(tmp_path / "phone.jpg", 256).astype(int) - 90).max() <= 2
    with pytest.raises(ImageError, match=r"phone.jpg: 12000x9000 pixels is too large \(a decompression bomb\?\)"):
        open_image(tmp_path / "phone.jpg")


def test_aspect_aware_resize_then_centre_crop(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = 255  # the left quarter white: cut away by the centre crop of the wide image
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = decode(tmp_path / "wide.png", 50)  # 200x100 -> 100x50 -> centre 50x50 = columns 25..75 of 100
    assert out.shape == (50, 50, 3) and out[:, 5:].max() == 0


def test_cache_is_built_once_and_rebuilt_when_sources_change(kaggle, tmp_path):
    (kaggle / "cat.99.jpg").write_bytes(b"broken")  # skipped, counted, named
    (kaggle / "notes.txt").write_text("ignored: not an image")
    listing = scan_folder(kaggle)
    assert listing.ignored == ["notes.txt"]
    first = open_cache(listing, 32, tmp_path / "cache", progress=False, echo=lambda *a: None)
    assert first.rebuilt and first.images.shape == (24, 32, 32, 3) and len(first.skipped) == 1
    assert "cat.99.jpg" in first.skipped[0]
    assert abs(first.mean[0] - first.mean[2]) < 0.02 and first.mean[0] > first.mean[1]  # 12 red, 12 blue
    again = open_cache(scan_folder(kaggle), 32, tmp_path / "cache", progress=False, echo=lambda *a: None)
    assert (
        again.skipped == first.skipped
        and not again.rebuilt
        and np.array_equal(np.asarray(again.images), np.asarray(first.images))
    )
    time.sleep(0.01)
    os.utime(kaggle / "cat.3.jpg")  # touched: rebuilt
    assert open_cache(scan_folder(kaggle), 32, tmp_path / "cache", progress=False, echo=lambda *a: None).rebuilt
    (kaggle / "cat.99.jpg").unlink()
    save(kaggle / "dog.50.jpg")  # a file removed and one added: rebuilt, nothing skipped now
    cache = open_cache(scan_folder(kaggle), 32, tmp_path / "cache", progress=False, echo=lambda *a: None)
    assert cache.rebuilt and cache.images.shape[0] == 25 and not cache.skipped
    assert open_cache(scan_folder(kaggle), 40, tmp_path / "cache", progress=False, echo=lambda *a: None).rebuilt
    data_file = cache.folder / "images.u8"
    data_file.write_bytes(data_file.read_bytes()[:100])  # damaged cache: rebuilt, never read
    assert open_cache(scan_folder(kaggle), 32, tmp_path / "cache", progress=False, echo=lambda *a: None).rebuilt


def test_ten_crop_geometry():
    size, crop = 256, 227
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=2).astype(np.uint8)[None]  # pixel = (row, col)
    windows = [view_window(view, size, crop) for view in TEN_VIEWS]
    assert sorted({w[:2] for w in windows}) == [(0, 0), (0, 29), (14, 14), (29, 0), (29, 29)]
    assert sorted(w[2] for w in windows) == [False] * 5 + [True] * 5
    for top, left, flip in windows:
        if True:
            out = crop_batch(image, np.array([0]), [top], [left], [flip], crop)[0]
            assert out.shape == (crop, crop, 3)
            assert out[0, 0, 0] == top and out[-1, 0, 0] == top + crop - 1
            first, last = (left + crop - 1, left) if flip else (left, left + crop - 1)
            assert out[0, 0, 1] == first and out[0, -1, 1] == last


def test_evaluation_reports_the_centre_crop_and_the_average_of_ten_views(tmp_path):
    from cnnlab.data.loader import InputNorm
    from cnnlab.inference import evaluate_source
    from cnnlab.train import Runtime

    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    folder.mkdir()
    for i in range(10):  # noise, so that every crop differs
        for name in ("cat", "dog"):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{name}.{i}.png")
    source = folder_source(folder, tmp_path, val_split=0.5)
    n = source.size("test")
    seen = []
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    model.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    model.cnnlab_input_norm = InputNorm((0.5,) * 3, (0.25,) * 3)
    report, views = evaluate_source(model, source, "test", Runtime("cpu"), batch_size=8, channels_last=False)
    centre = views["centre crop"]
    assert sum(len(x) for x in seen) == 10 * n  # ten views; the centre crop is one of them, computed once
    pixels = torch.cat(seen).view(10, n, 3, 32, 32)
    assert len({tuple(v.flatten()[:64].tolist()) for v in pixels}) == 10  # ten different windows
    with torch.no_grad():
        ten = torch.stack([torch.softmax(model(v), 1) for v in pixels]).mean(0)
        centre_alone = torch.softmax(model(pixels[0]), 1)
    assert torch.allclose(centre, centre_alone)
    labels = source.labels("test")
    assert report.accuracy == pytest.approx(float((centre.argmax(1) == labels).float().mean()))
    assert report.ten_crop_accuracy == pytest.approx(float((ten.argmax(1) == labels).float().mean()))
    assert torch.allclose(views["10-crop"], ten)


def test_train_predict_and_kaggle_submission(kaggle, tmp_path, capsys):
    test1 = tmp_path / "test1"
    for i, colour in ((1, (220, 40, 40)), (2, (40, 40, 220)), (10, (40, 40, 220)), (3, (220, 40, 40))):
        save(test1 / f"{i}.jpg", colour)
    args = [
        "train",
        "pattern",
        "--data",
        str(kaggle),
        "--image-size",
        "40",
        "--crop",
        "32",
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--out-dir",
        str(tmp_path / "runs"),
        "--name",
        "colours",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--val-split",
        "0.25",
        "--option",
        "text=CONV(8) => RELU => POOL => CONV(8) => RELU => POOL => FC",
        "--option",
        "img_size=32",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "10-crop (corners + centre, mirrored)" in out
    run = tmp_path / "runs" / "colours"

    def submit(name, *extra):
        args = ["predict", run, "--kaggle", test1, "-o", tmp_path / name, "--cache-dir", tmp_path / "cache", *extra]
        assert main([str(a) for a in args]) == 0
        return list(csv.reader(open(tmp_path / name)))

    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(kaggle), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "10-crop (corners + centre, mirrored)" in out and "(24 images)" in out
    assert (run / f"eval-{tmp_path.name}_train" / "mistakes.png").is_file()
    # --data-dir says where an IDX dataset is: it evaluated the run's own folder, silently, whatever it named
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-dir", str(test1)]) == 2
    assert "--data-dir is where the IDX datasets' files are; it does nothing with --data" in capsys.readouterr().err
    # The run's own validation split after its cache was deleted: decoded again where --cache-dir says
    shutil.rmtree(tmp_path / "cache")
    assert main(["evaluate", str(run), "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "decoding 24 images" in out and "(6 images)" in out  # the split, 0.25 of the 24, decoded anew
    assert list((tmp_path / "elsewhere").iterdir()) and not (tmp_path / "cache").exists()
    rows = submit("sub.csv")
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == ["1", "2", "3", "10"]
    p_dog = {int(r[0]): float(r[1]) for r in rows[1:]}
    assert p_dog[2] > 0.5 > p_dog[1] and p_dog[10] > 0.5 > p_dog[3]  # blue images are the dogs here
    assert [r[1] for r in submit("hard.csv", "--hard")[1:]] == ["0", "1", "0", "1"]
    capsys.readouterr()
    assert main(["predict", str(run), str(test1 / "2.jpg")]) == 0
    assert capsys.readouterr().out.split(": ")[1].startswith("dog")


def test_image_folder_batches_are_uint8_channels_last(kaggle, tmp_path):
    source = folder_source(kaggle, tmp_path, val_split=0.2)
    loader = source.loader("train", 10, "cpu", train=True, seed=1)
    batches = list(loader.epoch(0))
    assert source.size("train") == 19 and len(batches) == 2  # 24 images (1 unreadable), 5 held out
    assert batches[0][0].dtype == torch.uint8 and batches[0][0].shape == (10, 3, 32, 32)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
    again = list(loader.epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))  # same seed, epoch and step: same crops
    resumed = list(loader.epoch(0, start=1))
    assert torch.equal(resumed[0][0], batches[1][0])


def test_val_dir_is_used_and_its_classes_must_match(kaggle, tmp_path):
    val = tmp_path / "val"
    for i in range(3):
        save(val / f"cat.{i}.jpg", (220, 40, 40))
        save(val / f"dog.{i}.jpg", (40, 40, 220))
    source = folder_source(kaggle, tmp_path, val_dir=str(val))
    assert source.size("train") == 24 and source.size("val") == 6 and source.size("test") == 6
    save(val / "bird.0.jpg")
    save(val / "bird.1.jpg")  # one bird alone would be refused as a misnamed file (a class of one image)
    with pytest.raises(FolderError, match="classes .* differ"):
        folder_source(kaggle, tmp_path, val_dir=str(val))


def test_evaluating_a_run_that_validated_on_a_val_dir_reads_that_folder_alone(kaggle, tmp_path):
    """The test split of a run trained with --val-dir is that folder, but evaluate listed and decoded the training
    folder too (Kaggle's 23,000 images: minutes, once its cache is gone) and failed when it had been moved away."""
    val = tmp_path / "val"
    for i in range(3):
        save(val / f"cat.{i}.jpg", (220, 40, 40))
        save(val / f"dog.{i}.jpg", (40, 40, 220))
    trained = folder_source(kaggle, tmp_path, val_dir=str(val))
    shutil.rmtree(tmp_path / "cache")
    shutil.rmtree(kaggle)
    said = []
    cfg = TrainConfig(dataset="folder", data=str(kaggle), val_dir=str(val), image_size=40, crop=32, progress=False)
    source = FolderSource.open(cfg.updated(cache_dir=str(tmp_path / "cache")), echo=said.append, training=False)
    assert source.classes == trained.classes and torch.equal(source.labels("test"), trained.labels("test"))
    assert torch.equal(source.images("test", range(6)), trained.images("test", range(6)))
    assert [line.split(" into ")[0] for line in said] == [f"decoding 6 images of {val}"]


# --- which files a folder holds, against Keras' flow_from_directory (scripts/make_keras_folder_fixtures.py) ---

KERAS_FOLDER = json.loads((Path(__file__).parent / "fixtures" / "keras_folders.json").read_text())


def test_a_class_folder_counts_its_images_at_any_depth_as_keras_does(tmp_path):
    """Keras takes cat/2019/summer/4.jpg as a cat. Two differences, on purpose and said in the notes: a hidden
    file (macOS' ._x.jpg is not an image) and an empty class folder (Keras gives it an output never trained)."""
    for where, kind in KERAS_FOLDER["files"]:
        path = tmp_path / where
        if kind == "folder":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "image":
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not an image")
    listing = scan_folder(tmp_path)
    keras = [f for f in KERAS_FOLDER["filenames"] if not Path(f).name.startswith(".")]
    assert sorted(f.relative_to(tmp_path).as_posix() for f in listing.files) == keras
    assert listing.classes == tuple(c for c in KERAS_FOLDER["class_indices"] if c != "empty")
    assert [listing.classes[y] for y in listing.labels] == [Path(f).parts[0] for f in sorted(keras)]
    assert listing.ignored == ["README.txt", "cat/notes.txt", "empty/"]


def test_a_broken_link_is_left_out_as_a_broken_link_naming_its_target(tmp_path):
    """A link whose target was moved was left out as "not an image of the layout" (.jpg 1), as if the file were
    of the wrong kind; the note says that it is a broken link, and where it pointed."""
    for name in ("cat", "dog"):
        save(tmp_path / name / "0.png")
    gone = tmp_path.parent / "moved-away" / "1.jpg"
    (tmp_path / "cat" / "1.jpg").symlink_to(gone)
    listing = scan_folder(tmp_path)
    assert len(listing.files) == 2 and listing.ignored == [f"cat/1.jpg (a broken link to {gone})"]
    note = listing.ignored_note()
    assert "(broken link 1; images are" in note and note.endswith(f": cat/1.jpg (a broken link to {gone})"), note
    assert note.startswith(f"{tmp_path}: left out 1 entry that is not an image of the subfolders layout ("), note


def test_loose_images_beside_class_folders_are_refused_naming_both(tmp_path):
    for name in ("cat", "dog"):
        for i in range(2):
            save(tmp_path / name / f"{i}.png")
    save(tmp_path / "preview.png")
    with pytest.raises(FolderError, match=r"holds loose images \(preview.png\) beside class subfolders \(cat/, dog/\)"):
        scan_folder(tmp_path)


def test_a_banner_image_is_resampled_in_its_crop_only(tmp_path, monkeypatch):
    """A 4000x1 PNG (12 KB) at size 256 was resized whole to 1,024,000x256 before the crop: 1 GB of memory and
    seconds per image. Resampling is bounded by the crop's area; a photo's pixels are as before."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1, 4000, 3), dtype=np.uint8)).save(tmp_path / "banner.png")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    photo = decode(tmp_path / "photo.png", 24)
    sizes, resize = [], Image.Image.resize

    def recorded(self, size, *args, **kwargs):
        sizes.append(size)
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recorded)
    assert decode(tmp_path / "banner.png", 256).shape == (256, 256, 3)
    assert max(w * h for w, h in sizes) <= 4 * 256 * 256
    reference = np.asarray(Image.open(tmp_path / "photo.png").resize((32, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(photo, reference[:, 4:28]) and np.array_equal(decode(tmp_path / "photo.png", 24), photo)


def test_a_photo_stored_on_its_side_is_read_upright_by_its_exif_orientation(tmp_path):
    """A phone stores a portrait photo sideways with Orientation=6 (rotate 90 degrees to show): it was read
    sideways, and LeNet-5 read a 7 as 0 (0.40) instead of 7 (0.999). Now every reader sees the shown picture."""
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[10:15] = 255  # a band at the top of the centre square that decode keeps
    save_exif = Image.Exif()
    save_exif[0x0112] = 6
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.png", exif=save_exif)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    assert np.array_equal(decode(tmp_path / "phone.png", 20), decode(tmp_path / "upright.png", 20))
    assert decode(tmp_path / "phone.png", 20)[:5].min() == 255  # the band is at the top, as shown


def test_a_folder_is_named_by_its_last_two_folder_names_however_it_is_written(tmp_path, monkeypatch):
    """Run names, a folder run's data name and evaluate's eval-<label>/ folder all come from folder_label: '.'
    and '..' name the folder, not the dots, and a run's name has no characters a shell would trip on."""
    train = tmp_path / "dogs vs cats" / "train"
    (train / "sub").mkdir(parents=True)
    monkeypatch.chdir(train / "sub")
    assert folder_label("..") == folder_label(train) == "dogs vs cats/train"
    assert folder_slug("../.") == "dogs-vs-cats_train"
    monkeypatch.chdir(train)
    cfg = TrainConfig(data=".", dataset="folder", out_dir=str(tmp_path / "runs"))
    assert new_run_dir(cfg).name.startswith("lenet5-dogs-vs-cats_train-2")  # then the time
