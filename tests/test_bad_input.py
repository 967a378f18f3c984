"""Bad input through the command line: each case ends in one clear line naming the file or option (exit 2),
or in a named, counted skip; never a traceback, never a silently wrong result."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import TrainConfig, create_model, fit
from cnnlab.data.idx import write_idx
from cnnlab.errors import DataError


def cli(*args, cwd=None):
    """The command line in a subprocess: what a user sees, tracebacks included."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.fixture
def run_main(capsys, monkeypatch, tmp_path):
    """The command line in this process (faster); an uncaught exception would fail the test itself."""
    from cnnlab.cli import main

    monkeypatch.chdir(tmp_path)

    def call(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors: its usage line, then the error line
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture
def broken_idx(tmp_path, synthetic_mnist_dir):
    """A copy of the synthetic MNIST folder in which one file at a time can be damaged."""
    import shutil

    target = tmp_path / "idx"
    shutil.copytree(synthetic_mnist_dir, target)
    return target / "mnist"


def _damage(folder, kind):
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    if kind == "truncated-gzip":
        images.write_bytes(images.read_bytes()[:500])
        return "corrupt or truncated gzip"
    if kind == "wrong-magic":
        write_idx(images, np.zeros(600, np.uint8))  # a labels file where the images belong
        return "wrong magic number 2049 (expected 2051)"
    if kind == "count-mismatch":
        write_idx(labels, np.zeros(599, np.uint8))
        return "599 labels for 600 images"
    if kind == "not-idx":
        images.write_bytes(b"<html>404 not found</html>")
        return "not an IDX file"
    if kind == "truncated-data":
        import gzip

        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-1000]))
        return "truncated"
    raise AssertionError(kind)


IDX_CASES = ["truncated-gzip", "wrong-magic", "count-mismatch", "not-idx", "truncated-data"]


@pytest.mark.parametrize("kind", IDX_CASES)
def test_broken_idx_files(broken_idx, tmp_path, kind, run_main):
    message = _damage(broken_idx, kind)
    code, _, err = run_main(
        "train", "lenet5", "--data-dir", broken_idx.parent, "--dry-run", "--out-dir", tmp_path / "runs"
    )
    line = err.strip()
    assert code == 2 and "\n" not in line and message in line and "train-" in line, line


def _image_folder(root, n=6):
    for i in range(n):
        Image.new("RGB", (40, 30), (200, 20, 20)).save(root / f"cat.{i}.jpg") if root.mkdir(
            parents=True, exist_ok=True
        ) is None else None
        Image.new("RGB", (30, 40), (20, 20, 200)).save(root / f"dog.{i}.jpg")
    return root


FOLDER_CASES = {
    "empty": (lambda r: r.mkdir(), "no images found"),
    "missing": (lambda r: None, "no such file or folder"),
    "one-class": (
        lambda r: [
            r.mkdir(),
            Image.new("RGB", (9, 9)).save(r / "cat.1.jpg"),
            Image.new("RGB", (9, 9)).save(r / "cat.2.jpg"),
        ],
        "only one class (cat)",
    ),
    "unlabelled-names": (lambda r: [r.mkdir(), Image.new("RGB", (9, 9)).save(r / "1.jpg")], "cannot tell the labels"),
    # it trained on the cats alone and reported 100% on them
    "a class unreadable": (
        lambda r: [_image_folder(r)] + [(r / f"dog.{i}.jpg").write_bytes(b"broken") for i in range(6)],
        "no readable images of class dog; the first of 6 unreadable:",
    ),
}


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_bad_image_folders(tmp_path, case, run_main):
    make, message = FOLDER_CASES[case]
    root = tmp_path / "train"
    make(root)
    code, _, err = run_main(
        "train",
        "alexnet_bn",
        "--data",
        root,
        "--dry-run",
        "--out-dir",
        tmp_path / "runs",
        "--cache-dir",
        tmp_path / "c",
        "--no-progress",
    )
    assert code == 2 and message in err and "\n" not in err.strip(), err


def test_a_validation_or_evaluation_folder_without_a_readable_image_is_refused(tmp_path, run_main):
    """It trained without validation, then ended in an internal error (torch.cat of no tensors) and left a run
    without a report; an evaluation on it was the same internal error."""
    train, val = _image_folder(tmp_path / "train"), tmp_path / "val"
    val.mkdir()
    for name in ("cat.90.jpg", "dog.91.jpg"):
        (val / name).write_bytes(b"")
    args = ["--out-dir", tmp_path / "runs", "--cache-dir", tmp_path / "c", "--image-size", "32", "--crop", "28"]
    args += ["--batch-size", "4"]
    code, _, err = run_main("train", "lenet5", "--data", train, "--val-dir", val, "--name", "v", *args)
    assert code == 2 and f"{val}: no readable images; the first of 2 unreadable:" in err, err
    assert not (tmp_path / "runs" / "v").exists()
    assert run_main("train", "lenet5", "--data", train, "--name", "t", "--epochs", "1", "--no-progress", *args)[0] == 0
    code, _, err = run_main("evaluate", tmp_path / "runs" / "t", "--data", val, "--cache-dir", tmp_path / "c")
    assert code == 2 and f"{val}: no readable images" in err, err


def test_a_file_name_that_is_not_utf8_trains_and_is_named_in_the_run(tmp_path, run_main):
    """Latin-1 names (café.jpg from an old zip) were an internal error in the cache's key, then in every file that
    names images; they train, and an unreadable one is named by its escape (caf\\udce9) on screen and in files."""
    train = _image_folder(tmp_path / "train")
    shutil.copy(train / "cat.0.jpg", train / os.fsdecode(b"cat.caf\xe9.7.jpg"))
    (train / os.fsdecode(b"dog.caf\xe9.8.jpg")).write_bytes(b"broken")
    args = ["--out-dir", tmp_path / "runs", "--name", "r", "--cache-dir", tmp_path / "c", "--no-progress"]
    args += ["--epochs", "1", "--image-size", "32", "--crop", "28", "--batch-size", "4"]
    code, out, err = run_main("train", "lenet5", "--data", train, *args)
    assert code == 0, err
    assert "dog.caf\\udce9.8.jpg: not an image Pillow can read" in out
    assert "dog.caf\\udce9.8.jpg" in (tmp_path / "runs" / "r" / "report.txt").read_text()


def test_broken_files_in_a_folder_are_skipped_named_and_counted(tmp_path):
    root = _image_folder(tmp_path / "train")
    (root / "cat.90.jpg").write_bytes(b"")  # zero bytes
    (root / "dog.91.jpg").write_bytes((root / "dog.0.jpg").read_bytes()[:120])  # truncated
    (root / "cat.92.jpg").write_text("a text file named like an image")
    args = [
        "train",
        "pattern",
        "--data",
        root,
        "--image-size",
        "36",
        "--crop",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out-dir",
        tmp_path / "runs",
        "--name",
        "r",
        "--cache-dir",
        tmp_path / "cache",
        "--no-progress",
        "--option",
        "text=CONV(4) => RELU => POOL => FC",
        "--option",
        "img_size=32",
    ]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    for name in ("cat.90.jpg", "dog.91.jpg", "cat.92.jpg"):  # in the data's notes and in the report, no more
        assert (result.stdout + result.stderr).count(name) == 2, result.stdout + result.stderr
    report = json.loads((tmp_path / "runs" / "r" / "report.json").read_text())
    assert len(report["skipped_files"]) == 3 and "skipped 3 unreadable file(s)" in result.stdout


CLI_CASES = [
    (["train", "lenet5", "--epochs", "-3"], "--epochs is -3; expected a whole number >= 1"),
    (["train", "lenet5", "--batch-size", "0"], "--batch-size is 0; expected a whole number >= 1"),
    (["train", "lenet5", "--lr", "-1"], "--lr is -1.0; expected a number > 0"),
    (["train", "lenet5", "--val-split", "1.5"], "--val-split is 1.5; expected a number in [0, 1)"),
    (["train", "lenet9"], "unknown model 'lenet9'"),
    (["train", "lenet5", "--name", "../escape"], '--name is "../escape"; expected a plain folder name'),
    (["train", "lenet5", "--option", "bogus=1"], "has no option bogus"),
    (["train", "--resume", "/nonexistent/run"], "/nonexistent/run: no such run directory"),
    (["train", "--resume", __file__], f"{__file__}: a file, not a run directory"),
    (["train"], "name a model to train"),
    (["summary", "lenet5", "--input", "28x28x1x9"], "size must look like 28x28x1"),
    # a size the builder refuses is --input's, not an --option no one gave (it was blamed on --option)
    (["advise", "lenet5", "--input", "10x10x1"], "--input 10x10x1: LeNet-5 needs an input size of at least 12"),
    (["advise", "INPUT => CONV => => FC"], "pattern error at position 18"),
    (["evaluate", "/nonexistent/run"], "no such run directory"),
    (["compute"], "name a model, or ask for --chart PNG"),
    (["predict", "run", "--kaggle", "test1", "-o", "sub.txt"], "must name a .csv file, got 'sub.txt'"),
    (["report", "run", "other", "-o", "runs.txt"], "must name a .html or .htm file, got 'runs.txt'"),
]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_bad_options_and_values(args, message, run_main):
    code, _, err = run_main(*args)
    # one error line (a pattern error adds the text and a caret under the position), never a traceback
    error_lines = [line for line in err.splitlines() if re.match(r"cnnlab( [\w-]+)?: error: ", line)]
    assert code == 2 and len(error_lines) == 1 and message in error_lines[0] and "Traceback" not in err, err


def test_config_file_errors(tmp_path, run_main):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "unknown.json").write_text(json.dumps({"epochz": 3}))
    (tmp_path / "list.json").write_text("[1, 2]")
    for name, message in (
        ("bad.json", "not valid JSON"),
        ("unknown.json", "unknown config key(s): epochz"),
        ("list.json", "holds one JSON object"),
        ("missing.json", "config file not found"),
    ):
        code, _, err = run_main("train", "lenet5", "--config", tmp_path / name)
        assert code == 2 and message in err and "\n" not in err.strip(), err


def test_weights_of_another_model_and_manifest_paths_are_refused(tmp_path, synthetic_mnist_dir):
    run = tmp_path / "runs" / "r"
    ok = cli(
        "train",
        "lenet5",
        "--data-dir",
        synthetic_mnist_dir,
        "--epochs",
        "1",
        "--out-dir",
        tmp_path / "runs",
        "--name",
        "r",
        "--no-progress",
    )
    assert ok.returncode == 0, ok.stderr
    from cnnlab.checkpoint import save_weights

    save_weights(run / "weights" / "last.safetensors", create_model("lenet5", num_classes=3))
    result = cli("evaluate", run, "--data-dir", synthetic_mnist_dir)
    assert result.returncode == 2 and "has shape" in result.stderr and "Traceback" not in result.stderr
    manifest = next((run / "checkpoints").iterdir()) / "MANIFEST.json"
    doc = json.loads(manifest.read_text())
    doc["files"]["../../../etc/passwd"] = "0" * 64
    manifest.write_text(json.dumps(doc))
    from cnnlab.checkpoint import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        load_checkpoint(manifest.parent)


def _small_data():
    from conftest import synthetic_digits

    from cnnlab.data import ArrayDataset

    images, labels = synthetic_digits(256, 5)
    ds = ArrayDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
    )
    return ds.subset(range(192)), ds.subset(range(192, 256))


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from cnnlab import checkpoint as ck
    from cnnlab.train import CheckpointWriteError

    train, val = _small_data()
    real = ck.atomic_write_bytes
    calls = {"n": 0}

    def full_disk_on_second_checkpoint(path, data):
        if "step-000000006" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        calls["n"] += 1
        return real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", full_disk_on_second_checkpoint)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*step-000000003 is intact"):
        fit(create_model("lenet5"), train, val, TrainConfig(epochs=3, batch_size=64, progress=False), run_dir=tmp_path)
    names = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert names == ["step-000000003"]  # no half-written folder left behind
    found, skipped = ck.latest_checkpoint(tmp_path)
    assert found[0].name == "step-000000003" and skipped == []


def test_nonfinite_skip_option_skips_the_step_and_keeps_training(capsys):
    """One poisoned step is skipped, counted in the history and said at the end; the weights stay finite."""
    train, val = _small_data()
    model = create_model("lenet5")
    calls = []

    def poison(module, args, output):
        calls.append(1)
        return output * float("nan") if len(calls) == 2 else output

    model.register_forward_hook(poison)
    history = fit(
        model, train, val, TrainConfig(epochs=1, batch_size=64, progress=False, nonfinite="skip", checkpoint_every=0)
    )
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert np.isfinite(history["loss"][0])
    assert history["skipped_steps"] == [1]
    assert re.search(r"\b1 of \d+ steps had a non-finite loss and were skipped", capsys.readouterr().out)


def test_images_with_nan_are_refused_not_wrapped_into_other_pixels():
    """NaN compares false, so one NaN let float images past the 0..1 check: values above 1 were then wrapped
    into uint8 (175.0 -> 81) without a word."""
    from cnnlab.data.arrays import as_array_dataset

    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).astype("float32")
    x[3, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"^x: 1 pixel value\(s\) are NaN or infinite$"):
        as_array_dataset(x, [0, 1, 0, 1])


def test_one_hot_labels_as_keras_to_categorical_gives_them():
    """The lesson one-hot encodes its labels (to_categorical, float32): they read as the class indices they
    encode; rows that are not one-hot say so instead of counting N x K labels."""
    from cnnlab.data.arrays import as_array_dataset

    x, y = np.zeros((6, 8, 8), np.uint8), np.array([0, 2, 1, 2, 0, 1])
    one_hot = np.eye(3, dtype="float32")[y]
    dataset = as_array_dataset(x, one_hot)
    assert dataset.labels.tolist() == y.tolist() and dataset.classes == ("0", "1", "2")
    assert as_array_dataset(x, one_hot.astype(int), classes=("a", "b", "c")).labels.tolist() == y.tolist()
    with pytest.raises(DataError, match=r"labels \(6, 3\) are not one-hot rows: give class indices 0..K-1"):
        as_array_dataset(x, one_hot * 0.9 + 0.1 / 3)  # smoothed labels


def test_a_network_of_dense_layers_alone_finishes_its_run(tmp_path, run_main, synthetic_mnist_dir):
    """The notation allows FC-only networks: such a run trained, then ended in 'has no 2-D convolution' before its
    report (filters.png and Grad-CAM need one), and its resume failed the same way. It finishes without them."""
    args = ["train", "pattern", "--option", "text=FC(32) => RELU => FC", "--data-dir", synthetic_mnist_dir]
    code, out, err = run_main(*args, "--epochs", "1", "--out-dir", tmp_path / "runs", "--name", "mlp", "--no-progress")
    assert code == 0, err
    run = tmp_path / "runs" / "mlp"
    assert (run / "report.html").is_file() and (run / "mistakes.png").is_file() and not (run / "filters.png").exists()


def test_a_grad_cam_layer_without_feature_maps_is_one_line(tmp_path, run_main, synthetic_mnist_dir):
    """explain --layer classifier.1 (a dense layer) was an internal error deep in the upsampling."""
    args = ["--data-dir", synthetic_mnist_dir, "--epochs", "1", "--out-dir", tmp_path / "runs", "--name", "l"]
    assert run_main("train", "lenet5", *args, "--no-progress")[0] == 0
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    code, _, err = run_main("explain", tmp_path / "runs" / "l", image, "--layer", "classifier.1", "--method", "gradcam")
    assert code == 2 and "--layer classifier.1: Grad-CAM needs a layer of feature maps" in err, err


def test_resuming_a_run_with_another_network_names_the_checkpoint(tmp_path):
    """fit(model, run_dir=D, resume=True) with a model other than D's: torch's size-mismatch RuntimeError."""
    from cnnlab.checkpoint import CheckpointError

    x = np.random.default_rng(0).integers(0, 255, (64, 28, 28)).astype("uint8")
    y = np.arange(64) % 10
    for text, resume in (("CONV(8, 4) => RELU => POOL => FC", False), ("CONV(8, 2) => RELU => POOL => FC", True)):
        model = create_model("pattern", text=text)
        config = TrainConfig(epochs=1, batch_size=32, progress=False)
        if not resume:
            fit(model, (x, y), config=config, run_dir=tmp_path / "rc")
            continue
        with pytest.raises(CheckpointError, match=r"step-\d+: the checkpoint holds another network .*conv1.weight"):
            fit(model, (x, y), config=config, run_dir=tmp_path / "rc", resume=True)
