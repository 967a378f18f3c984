"""The run directory (rundir.RunDir) and the commands that read a run: each check on a run written by today's code.

One small image-folder run (LeNet-5 in colour on 24 generated pictures, one epoch) is shared by the module; the
commands that refuse do so before any work, so most tests here take well under a second once it exists.
"""

from __future__ import annotations

import base64
import csv
import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import create_model
from cnnlab.checkpoint import save_weights
from cnnlab.cli import main
from cnnlab.errors import RunError, UsageError
from cnnlab.rundir import FORMAT_VERSION, RunDir, upgrade_model_info

STATE = re.compile(r"<span>state</span><b>([^<]*)</b>")


def write_pictures(folder, names, seed=0):
    """Small colour pictures: class 'cat' reddish, 'dog' bluish, so that one epoch learns something."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        pixels = rng.integers(0, 90, (32, 32, 3), dtype=np.uint8)
        pixels[..., 0 if name.startswith("cat") else 2] += 150
        Image.fromarray(pixels).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundir")
    data = write_pictures(root / "pets", [f"{a}.{i}.png" for a in ("cat", "dog") for i in range(12)])
    args = ["train", "lenet5", "--data", str(data), "--out-dir", str(root / "runs"), "--name", "pets"]
    args += ["--image-size", "32", "--crop", "28", "--epochs", "1", "--batch-size", "8", "--no-progress"]
    args += ["--cache-dir", str(root / "cache"), "--seed", "0", "--val-split", "0.25"]
    assert main(args) == 0
    return root / "runs" / "pets"


@pytest.fixture
def run_copy(folder_run, tmp_path):
    copy = tmp_path / "pets"
    shutil.copytree(folder_run, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


def leftovers(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name)


# --- issue 19's four bugs, on a run written today ------------------------------------------------------------


def test_the_page_of_a_new_image_folder_run_keeps_its_preprocessing_note(folder_run):
    assert "data" in json.loads((folder_run / "model.json").read_text())  # today's format, no "pipeline"
    page = (folder_run / "report.html").read_text()
    assert "files: shorter side to 32, centre crop, then 28 crops" in page


def test_the_validation_line_appears_once(folder_run):
    page = (folder_run / "report.html").read_text()
    notes = page[page.index('<ul class="notes">') : page.index("</ul>")]
    assert notes.count("validation:") == 1, notes
    assert "6 images held out (25%, stratified, seed 0)" in notes  # the data layer's own line (notes.txt)


def test_a_finished_run_says_finished_on_its_page_and_in_runs(folder_run, capsys):
    assert STATE.search((folder_run / "report.html").read_text()).group(1) == "finished"
    assert main(["runs", str(folder_run.parent)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[2].endswith("finished")
    (folder_run / "eval-x_y").mkdir(exist_ok=True)  # an evaluation's report folder, with its own report.txt
    (folder_run / "eval-x_y" / "report.txt").write_text("top-1 accuracy: 1.0000\n")
    try:  # the run's own folder lists that run (its eval-*/ folders were listed as broken runs)
        assert main(["runs", str(folder_run)]) == 0
        assert capsys.readouterr().out.splitlines() == listing
    finally:
        shutil.rmtree(folder_run / "eval-x_y")


def test_report_txt_is_written_atomically(run_copy, monkeypatch):
    """A full disk while the evaluation is written leaves the previous report.txt whole and no temporary file."""
    import torch

    from cnnlab.evaluation.metrics import make_report
    from cnnlab.inference import write_evaluation

    before = (run_copy / "report.txt").read_bytes()
    probs = torch.full((4, 2), 0.5)
    report = make_report(probs, torch.tensor([0, 1, 0, 1]), ("cat", "dog"))

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="report.txt"):
        write_evaluation(report, {"": probs}, None, "test", RunDir(run_copy), "t")
    assert (run_copy / "report.txt").read_bytes() == before
    assert leftovers(run_copy) == []


def test_every_file_of_a_run_is_whole_and_no_temporary_file_stays(folder_run):
    assert leftovers(folder_run) == []
    for png in folder_run.glob("*.png"):
        Image.open(png).load()
    for name in ("config.json", "model.json", "report.json", "compute.json", "environment.json"):
        json.loads((folder_run / name).read_text())


# --- what the page gained: filters and where the network looked ----------------------------------------------


def test_the_page_shows_the_first_layers_filters_and_grad_cam_of_the_mistakes(folder_run):
    page = (folder_run / "report.html").read_text()
    assert base64.b64encode((folder_run / "filters.png").read_bytes()).decode() in page
    filters = page[page.index('<section id="filters">') :]
    assert "data:image/png;base64," in filters[: filters.index("</section>")]
    report = json.loads((folder_run / "report.json").read_text())
    assert (folder_run / "mistakes_gradcam.png").is_file() == (report["accuracy"] < 1)
    assert ("Grad-CAM overlays of the worst mistakes" in page) == (report["accuracy"] < 1)


def test_the_page_escapes_what_a_run_holds(run_copy):
    """A class name with markup in it is text on the page (jinja2's autoescaping)."""
    info = json.loads((run_copy / "model.json").read_text())
    info["classes"] = ["<script>alert(1)</script>", "dog"]
    (run_copy / "model.json").write_text(json.dumps(info))
    page = RunDir(run_copy).write_report().read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- predictions.csv names files -----------------------------------------------------------------------------


def test_predictions_of_an_image_folder_run_name_the_files(folder_run):
    with open(folder_run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(re.fullmatch(r"(cat|dog)\.\d+\.png", r["file"]) for r in rows)
    assert all(r["file"].split(".")[0] == r["label"] for r in rows)  # the file's own class, not a position's


# --- the format version and older runs -----------------------------------------------------------------------


def test_a_format_1_model_json_reads_as_today(run_copy):
    info = json.loads((run_copy / "model.json").read_text())
    assert info["format_version"] == FORMAT_VERSION
    old = {k: v for k, v in info.items() if k not in ("data", "format_version")}
    old["pipeline"] = {"kind": "folder", "image_size": 32, "crop": 28}
    (run_copy / "model.json").write_text(json.dumps(old))
    upgraded = RunDir(run_copy).model_info()
    assert upgraded["data"]["kind"] == "folder" and upgraded["data"]["crop"] == 28 and "pipeline" not in upgraded
    assert upgrade_model_info({"pipeline": {"kind": "idx"}})["data"]["kind"] == "array"
    page = RunDir(run_copy).write_report().read_text()
    assert "files: shorter side to 32, centre crop, then 28 crops" in page
    assert STATE.search(page).group(1) == "finished"


def test_runs_and_the_page_name_a_folder_trained_as_dot_by_its_own_name(folder_run, run_copy, capsys):
    """`cnnlab train --data .` from inside the folder: `cnnlab runs` showed an empty data column (config.json's
    '.' has no parts) while the run's name said which folder it was. The name training gave it is shown; a format 1
    run, whose model.json called every folder "folder", still shows config.json's path."""
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "data": "."}))
    assert main(["runs", str(run_copy)]) == 0
    assert f" {folder_run.parent.parent.name}/pets " in capsys.readouterr().out  # the folder the fixture trained on
    assert RunDir(run_copy).record().data_label == json.loads((run_copy / "model.json").read_text())["dataset"]
    info = json.loads((run_copy / "model.json").read_text())
    (run_copy / "model.json").write_text(json.dumps({**info, "dataset": "folder"}))
    (run_copy / "config.json").write_text(json.dumps({**config, "data": "../shared/data/dvc/train"}))
    assert RunDir(run_copy).record().data_label == "dvc/train"


def test_a_pattern_run_from_before_format_3_keeps_its_even_kernels_padding(run_copy):
    """Runs before format 3 padded an even kernel's "same" k // 2 on every side (one pixel more than Keras): such
    a run still loads its weights into the network it was trained as, and predicts as that network."""
    info = json.loads((run_copy / "model.json").read_text())
    channels, side, _ = info["input_size"]
    text = "CONV(4, 2) => RELU => FC"
    options = dict(text=text, num_classes=len(info["classes"]), in_chans=channels, img_size=side)
    trained = create_model("pattern", **options, same_padding="centred").eval()
    save_weights(run_copy / "weights" / "last.safetensors", trained)
    old = {**info, "model": "pattern", "options": options, "format_version": 2}
    (run_copy / "model.json").write_text(json.dumps(old))
    model, upgraded = RunDir(run_copy).load_model()
    assert upgraded["options"]["same_padding"] == "centred"
    x = torch.randn(3, channels, side, side)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)
    # today's run of the same pattern records the rule it was made with, and reads back with it
    assert create_model("pattern", **options).cnnlab_options["same_padding"] == "keras"
    assert upgrade_model_info({**old, "format_version": FORMAT_VERSION})["options"] == options


def test_strict_and_tolerant_reads_of_a_damaged_run(run_copy):
    (run_copy / "model.json").write_text('{"model": "lenet5"')
    with pytest.raises(RunError, match="model.json"):
        RunDir(run_copy).model_info()
    record = RunDir(run_copy).record()  # the report still shows what is there
    assert record.model is None and "model.json" in record.problems and record.config["model"] == "lenet5"


@pytest.mark.parametrize(
    "change, problem",
    [  # the run: 3 channels, 2 classes
        ({"input_norm": {"mean": [0.1] * 3, "std": [0.3]}}, "input_norm std [0.3] is not 3 finite"),
        ({"input_norm": {"mean": ["x"] * 3, "std": [0.3] * 3}}, "input_norm mean ['x', 'x', 'x'] is not 3 finite"),
        (
            {"input_norm": {"mean": [0.1] * 3, "std": [0.3, 0, 0.3]}},
            "input_norm std [0.3, 0, 0.3] is not 3 finite number(s) above 0",
        ),
        ({"input_size": [3, 28]}, "input_size [3, 28] is not [channels, height, width]"),
        ({"classes": ["a", "b", "c"]}, "3 classes for 2 outputs"),
    ],
)
def test_model_json_values_that_would_fail_deep_or_answer_nan_name_the_file(run_copy, change, problem, capsys):
    """Each once ended in a RuntimeError, ValueError or IndexError from inside a prediction, or in NaN
    probabilities with exit 0 (a std of 0)."""
    info = json.loads((run_copy / "model.json").read_text())
    (run_copy / "model.json").write_text(json.dumps({**info, **change}))
    image = run_copy.parent / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert main(["predict", str(run_copy), str(image)]) == 2
    err = capsys.readouterr().err
    assert f"{run_copy / 'model.json'}: damaged: {problem}" in err and "Traceback" not in err


# --- outputs that would clash with the run's own files (issue 20) --------------------------------------------


@pytest.mark.parametrize(
    "name", ["weights/last.safetensors", "weights/new.onnx", "config.json", "checkpoints/x.onnx", ".lock"]
)
def test_an_output_over_a_file_the_run_needs_is_refused(folder_run, name):
    with pytest.raises(UsageError, match="is a file of the run"):
        RunDir(folder_run).check_output(folder_run / name)


def test_outputs_the_run_does_not_need_are_allowed(folder_run, tmp_path):
    for path in (folder_run / "model.onnx", folder_run / "lenet.pt2", tmp_path / "m.onnx"):
        RunDir(folder_run).check_output(path)
    link = tmp_path / "sneaky.onnx"
    link.symlink_to(folder_run / "weights" / "last.safetensors")
    with pytest.raises(UsageError, match="is a file of the run"):
        RunDir(folder_run).check_output(link)
    with pytest.raises(UsageError, match="is a folder"):
        RunDir(folder_run).check_output(tmp_path)


def test_export_over_the_runs_weights_is_refused_and_they_stay(run_copy, capsys):
    weights = run_copy / "weights" / "last.safetensors"
    before = weights.read_bytes()
    assert main(["export", str(run_copy), "-o", str(weights)]) == 2
    err = capsys.readouterr().err
    assert f"-o {weights}: is a file of the run" in err and "Traceback" not in err
    assert weights.read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "onnx", "-o", "m.pt2"], "the name says pt2 but --format is onnx"),
        (["-o", "model.bin"], "name the file .onnx or .pt2"),
        (["-o", "no/such/folder/m.onnx"], "the folder no/such/folder does not exist"),
    ],
)
def test_export_refuses_a_name_that_says_another_format(run_copy, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run_copy), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("cnnlab: error:") == 1
    assert leftovers(tmp_path) == [] and not (tmp_path / "m.pt2").exists()


@pytest.mark.parametrize(
    "command",
    [["report", "RUN", "-o", "no/such/page.html"], ["predict", "RUN", "--kaggle", "TEST1", "-o", "no/such/s.csv"]],
)
def test_an_output_in_a_folder_that_does_not_exist_is_refused_before_any_work(folder_run, tmp_path, monkeypatch,
                                                                               capsys, command):  # fmt: skip
    test1 = write_pictures(tmp_path / "test1", ["1.png"])
    monkeypatch.chdir(tmp_path)
    args = [{"RUN": str(folder_run), "TEST1": str(test1)}.get(a, a) for a in command]
    if "--kaggle" in args:
        args += ["--cache-dir", str(tmp_path / "cache")]  # where a cache would appear, had decoding begun
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "-o no/such/" in err and "the folder no/such does not exist" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test1"]  # nothing written, no cache built


# --- Kaggle submissions (issue 20) ---------------------------------------------------------------------------


def test_kaggle_ids_that_clash_are_refused_naming_the_files(folder_run, tmp_path, capsys):
    test1 = write_pictures(tmp_path / "test1", ["1.jpg", "01.jpg", "1.png", "2.png"])
    out = tmp_path / "sub.csv"
    assert main(["predict", str(folder_run), "--kaggle", str(test1), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "01.jpg, 1.jpg, 1.png would all be id 1" in err or "would all be id 1" in err
    for name in ("1.jpg", "01.jpg", "1.png"):
        assert name in err
    assert not out.exists()


def test_a_kaggle_file_without_a_number_is_refused_naming_it(folder_run, tmp_path, capsys):
    test1 = write_pictures(tmp_path / "test1", ["1.png", "photo 3.jpg"])
    assert main(["predict", str(folder_run), "--kaggle", str(test1), "-o", str(tmp_path / "s.csv")]) == 2
    assert f"{test1 / 'photo 3.jpg'}: not a Kaggle test file name" in capsys.readouterr().err


@pytest.mark.parametrize("inside", ["test1", "train"])
def test_a_kaggle_folder_holding_subfolders_is_refused_naming_them(folder_run, tmp_path, capsys, inside):
    """The folder above Kaggle's test1/ (or test1/test1/, as some unzip it) is no test folder, and says so; a
    training message (only one class) or a path that does not exist (kaggle/1.png for kaggle/test1/1.png) misled."""
    write_pictures(tmp_path / "kaggle" / inside, ["1.png", "2.png"])
    out = tmp_path / "s.csv"
    assert main(["predict", str(folder_run), "--kaggle", str(tmp_path / "kaggle"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'kaggle'}: holds its images in subfolders ({inside}/)" in err and "class" not in err
    assert not out.exists()


def test_a_kaggle_submission_sorts_ids_and_says_its_speed(folder_run, tmp_path, capsys):
    names = ["10.png", "2.png", "1.png", "33.png"]
    test1 = write_pictures(tmp_path / "test1", names, seed=1)
    out = tmp_path / "sub.csv"
    args = ["predict", str(folder_run), "--kaggle", str(test1), "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--single-crop", "--hard"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label" and [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 10, 33]
    assert {line.split(",")[1] for line in lines[1:]} <= {"0", "1"}
    assert re.search(r"4 images, 1 view\(s\) each, in [0-9.]+s: [0-9.]+ images/s", capsys.readouterr().out)
    assert leftovers(tmp_path) == []
    assert main([*args[:-4], "-o", str(folder_run / "metrics.csv")]) == 2  # a run's file is no submission


def test_a_kaggle_folder_without_one_readable_image_is_refused_naming_a_file(folder_run, tmp_path, capsys):
    test1 = tmp_path / "test1"
    test1.mkdir()
    for name in ("1.jpg", "2.jpg"):
        (test1 / name).write_bytes(b"not a jpeg")
    out = tmp_path / "sub.csv"
    args = ["predict", str(folder_run), "--kaggle", str(test1), "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{test1}: no readable images; the first of 2 unreadable: {test1 / '1.jpg'}" in err
    assert "Traceback" not in err and not out.exists()
    write_pictures(test1, ["3.png", "4.png"], seed=3)  # one readable image short of a row per id is as bad
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{test1}: 2 image(s) do not decode, so they would have no row: {test1 / '1.jpg'}" in err
    assert not out.exists()


def test_a_kaggle_submission_of_the_other_class_is_one_minus_the_default(folder_run, tmp_path, capsys):
    test1 = write_pictures(tmp_path / "test1", ["3.png", "1.png", "2.png"], seed=2)
    args = ["predict", str(folder_run), "--kaggle", str(test1), "--cache-dir", str(tmp_path / "c"), "--single-crop"]
    classes = json.loads((folder_run / "model.json").read_text())["classes"]

    def submitted(*extra):
        out = tmp_path / "sub.csv"
        assert main([*args, "-o", str(out), *extra]) == 0
        return {int(i): float(p) for i, p in (line.split(",") for line in out.read_text().splitlines()[1:])}

    capsys.readouterr()
    last = submitted("--no-progress")  # by default the last class ('dog'); decoding the folder shows no bar
    assert "decoding" not in capsys.readouterr().err
    first = submitted("--positive", classes[0])
    assert last.keys() == first.keys() == {1, 2, 3}
    assert all(abs(last[i] + first[i] - 1) < 2e-6 for i in last)  # two classes: p(first) = 1 - p(last)
    assert main([*args, "-o", str(tmp_path / "x.csv"), "--positive", "horse"]) == 2
    assert f"--positive 'horse' is not one of the run's classes {classes}" in capsys.readouterr().err


# --- a run that has not finished training (issue 20) ---------------------------------------------------------


def test_invert_is_refused_for_a_colour_run_where_it_would_do_nothing(folder_run, tmp_path, capsys):
    image = write_pictures(tmp_path / "one", ["cat.png"]) / "cat.png"
    assert main(["predict", str(folder_run), str(image), "--invert", "yes", "--runtime", "torch"]) == 2
    assert f"--invert yes is for grey models; {folder_run} reads colour images" in capsys.readouterr().err


def test_predict_on_an_unfinished_run_says_so_in_one_line(run_copy, tmp_path, capsys):
    for name in ("report.json", "report.txt"):
        (run_copy / name).unlink()
    image = write_pictures(tmp_path / "one", ["cat.png"]) / "cat.png"
    assert main(["predict", str(run_copy), str(image), "--runtime", "torch"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("cnnlab: note:")]
    assert len(notes) == 1 and "has not finished training (unfinished (1 of 1 epochs))" in notes[0]
    assert out.startswith(str(image))


# --- exports: the format from the name, no temporary file, the user's path in messages -----------------------


def test_export_takes_the_format_from_the_file_name(run_copy, tmp_path, capsys):
    import zipfile

    out = tmp_path / "pets.pt2"
    assert main(["export", str(run_copy), "-o", str(out)]) == 0
    assert zipfile.is_zipfile(out) and f"wrote {out}" in capsys.readouterr().out  # torch.export's archive
    assert leftovers(tmp_path) == [] and leftovers(run_copy) == []


def test_a_failed_export_leaves_nothing_and_names_the_users_file(tmp_path, monkeypatch):
    import torch

    from cnnlab import create_model
    from cnnlab.data.loader import InputNorm
    from cnnlab.export import export_pt2

    def half_written(program, path, **kwargs):
        open(path, "wb").write(b"PK half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.export, "save", half_written)
    out = tmp_path / "lenet.pt2"
    with pytest.raises(OSError) as failed:
        export_pt2(create_model("lenet5"), InputNorm((0.5,), (0.5,)), (1, 28, 28), out)
    assert failed.value.filename == str(out) and ".tmp" not in str(failed.value)
    assert list(tmp_path.iterdir()) == []


def test_the_worst_mistakes_get_grad_cam_on_the_page(run_copy):
    """Four images, three predicted wrong with falling confidence: mistakes_gradcam.png shows where the run's model
    looked in them, and the page embeds it under the mistakes."""
    import torch

    from cnnlab.data.arrays import ArraySource
    from cnnlab.evaluation.metrics import make_report
    from cnnlab.inference import write_evaluation

    model, _ = RunDir(run_copy).load_model()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (4, 3, 28, 28), dtype=np.uint8))
    labels = torch.tensor([0, 0, 1, 1])
    source = ArraySource.from_arrays(images, labels, (images, labels), classes=("cat", "dog"))
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    report = make_report(probs, labels, ("cat", "dog"))
    write_evaluation(report, {"": probs}, source, "test", RunDir(run_copy), "t", model)
    Image.open(run_copy / "mistakes_gradcam.png").load()
    page = RunDir(run_copy).write_report().read_text()
    assert "3 of 4 test images misclassified" in page
    assert base64.b64encode((run_copy / "mistakes_gradcam.png").read_bytes()).decode() in page
    assert "Grad-CAM overlays of the worst mistakes" in page


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_here_is_one_line_for_every_command(run_copy, tmp_path, capsys):
    """evaluate, predict and --kaggle passed --device unchecked to torch: an internal error; and predict answered
    through onnxruntime as if --device gpu had been a device."""
    image = write_pictures(tmp_path / "test1", ["1.png"])
    assert main(["export", str(run_copy)]) == 0  # predict's auto runtime now answers through onnxruntime
    for args in (
        ["evaluate", str(run_copy), "--device", "cuda"],
        ["predict", str(run_copy), str(image / "1.png"), "--device", "gpu"],
        ["predict", str(run_copy), "--kaggle", str(image), "--device", "cuda:1"],
    ):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert re.fullmatch(rf"cnnlab: error: device {args[-1]}: .*; devices here: auto, cpu\n", err), err


def test_an_output_over_another_runs_files_is_refused(folder_run, run_copy, tmp_path, capsys):
    """Only the run being read was protected: a submission written as another run's predictions.csv, or a report
    page over another run's report.html, replaced that run's file without a word."""
    test1 = write_pictures(tmp_path / "test1", ["1.png", "2.png"])
    before = [(run_copy / name).read_bytes() for name in ("predictions.csv", "curves.png")]
    (run_copy / "eval-x_y").mkdir()
    (run_copy / "eval-x_y" / "report.txt").write_text("an evaluation's report")  # named as its run's file
    for args in (
        ["predict", str(folder_run), "--kaggle", str(test1), "-o", str(run_copy / "predictions.csv")],
        ["report", str(folder_run), "-o", str(run_copy / "report.html")],
        ["explain", str(folder_run), str(test1 / "1.png"), "-o", str(run_copy / "eval-x_y" / "mistakes.png")],
        ["compute", "--chart", str(run_copy / "curves.png")],  # commands that read no run: any run's files too
        ["augment-preview", str(test1 / "1.png"), "-o", str(run_copy / "augment_preview.png")],
    ):
        assert main(args) == 2, args
        assert f"is a file of the run {run_copy} (" in capsys.readouterr().err
    assert [(run_copy / name).read_bytes() for name in ("predictions.csv", "curves.png")] == before
    # A folder with a settings file (--config FILE.json) is no run: a page or a picture may be written there
    (tmp_path / "config.json").write_text("{}")
    assert main(["filters", str(folder_run), "-o", str(tmp_path / "filters.png")]) == 0
    # and the run's own files stay its own whatever the folders above it hold
    assert main(["filters", str(run_copy), "-o", str(run_copy / "filters.png")]) == 2


def test_a_pattern_run_from_before_format_3_resumes_and_evaluates_as_the_network_it_was(synthetic_mnist_dir, tmp_path):
    """Such a run recorded neither its padding rule nor refused a count its text does not use (N=3 here): a
    resume rebuilt it with Keras' padding from config.json and rewrote model.json so (0.95 -> 0.82 in the
    review's case), and the count refused every command. Both files are read as that release wrote them."""
    runs = tmp_path / "runs"
    args = ["train", "pattern", "--data-dir", str(synthetic_mnist_dir), "--out-dir", str(runs), "--name", "old"]
    args += ["--option", "text=CONV(4, 2) => RELU => POOL => FC", "--option", "same_padding=centred"]
    assert main([*args, "--epochs", "1", "--batch-size", "64", "--no-progress", "--seed", "0"]) == 0
    for name in ("model.json", "config.json"):  # as the release before format 3 wrote them
        saved = json.loads((runs / "old" / name).read_text())
        options = saved["options" if name == "model.json" else "model_options"]
        del options["same_padding"]
        options["N"] = 3
        if name == "model.json":
            saved["format_version"] = 2
        (runs / "old" / name).write_text(json.dumps(saved))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        before = RunDir(runs / "old").load_model()[0](x)  # evaluate, predict and export load it so
        assert main(["evaluate", str(runs / "old")]) == 0
        assert main(["train", "--resume", str(runs / "old"), "--no-progress"]) == 0  # nothing left to train
        info = json.loads((runs / "old" / "model.json").read_text())
        assert info["options"]["same_padding"] == "centred" and info["options"]["N"] == 2
        assert info["format_version"] == FORMAT_VERSION
        torch.testing.assert_close(RunDir(runs / "old").load_model()[0](x), before, rtol=0, atol=0)


def test_a_run_trained_on_a_relative_folder_evaluates_and_resumes_from_anywhere(tmp_path, monkeypatch, capsys):
    """config.json kept --data as typed ('pets'): from another folder, evaluate and --resume failed ('pets: no such
    folder') or, worse, read another folder of that name there. A new run records its folders as absolute paths."""
    write_pictures(tmp_path / "here" / "pets", [f"{a}.{i}.png" for a in ("cat", "dog") for i in range(8)])
    write_pictures(tmp_path / "elsewhere" / "pets", [f"{a}.{i}.png" for a in ("cat", "dog") for i in range(3)], 1)
    monkeypatch.chdir(tmp_path / "here")
    args = ["train", "lenet5", "--data", "pets", "--out-dir", "runs", "--name", "r", "--image-size", "32"]
    args += ["--crop", "28", "--epochs", "1", "--batch-size", "4", "--no-progress", "--cache-dir", "cache"]
    assert main(args) == 0
    config = json.loads((tmp_path / "here" / "runs" / "r" / "config.json").read_text())
    assert config["data"] == str(tmp_path / "here" / "pets") and config["cache_dir"] == str(tmp_path / "here" / "cache")
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "here" / "runs" / "r")]) == 0
    assert f"{tmp_path / 'here' / 'pets'}: 16 images" in capsys.readouterr().out  # the run's folder, not the 6 here
    run = str(tmp_path / "here" / "runs" / "r")
    assert main(["train", "--resume", run, "--cache-dir", "cache2", "--no-progress"]) == 0  # a resume from here too
    assert json.loads(Path(run, "config.json").read_text())["cache_dir"] == str(tmp_path / "elsewhere" / "cache2")
    monkeypatch.chdir(tmp_path / "here")
    assert main(["train", "--resume", run, "--data", "pets", "--no-progress"]) == 0  # the same folder as typed first


def test_resuming_a_run_that_is_still_training_says_so(run_copy, capsys):
    """Before its first checkpoint, a run being trained answered --resume with 'no checkpoint to resume from' and
    advice to train it again with --overwrite, which then failed on the lock."""
    shutil.rmtree(run_copy / "checkpoints")
    with RunDir(run_copy).lock():  # as the training process holds it
        assert main(["train", "--resume", str(run_copy)]) == 2
    assert f"another training process (pid {os.getpid()}) is writing to this run" in capsys.readouterr().err


def test_a_run_with_no_weights_yet_is_not_also_said_to_have_weights_it_saved_last(run_copy, capsys):
    """predict, export and evaluate on a run in its first epoch said 'these are the weights it saved last', then
    'no weights yet'."""
    (run_copy / "report.json").unlink()
    (run_copy / "report.txt").unlink()
    shutil.rmtree(run_copy / "weights")  # as in its first epoch
    assert main(["export", str(run_copy), "-o", str(run_copy.parent / "m.onnx")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"cnnlab: error: {run_copy / 'weights' / 'last.safetensors'}: no weights yet (has the run finished an epoch?)"
    ]


def test_a_finished_run_without_its_last_weights_points_to_its_best(run_copy, capsys):
    """A finished run whose last.safetensors was deleted was told it had 'no weights yet (has the run finished an
    epoch?)' by every command, with its best weights beside it."""
    (run_copy / "weights" / "last.safetensors").unlink()
    assert main(["filters", str(run_copy), "-o", str(run_copy.parent / "f.png")]) == 2
    assert "last.safetensors: missing (the run has its best weights: --weights best)" in capsys.readouterr().err
