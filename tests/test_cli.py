import csv
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import cnnlab.cli.augment_preview
from cnnlab.cli import build_parser, main
from cnnlab.models import get_model_entry, list_models


def run_main(capsys, *args):
    """The command line in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_summary_prints_the_lessons_total(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "(None, 14, 14, 6)" in out


def test_summary_json(capsys):
    assert main(["summary", "lenet5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 61_706


def test_a_pattern_given_twice_is_refused_not_half_ignored(capsys):
    code = main(["summary", "INPUT => CONV(8) => RELU => FC", "--option", "text=INPUT => CONV(4) => RELU => FC"])
    assert code == 2
    assert "--option text=... and a pattern given as the model: give the pattern once" in capsys.readouterr().err


def test_two_class_counts_are_refused_not_one_silently_taken(capsys):
    """summary lenet5 --option num_classes=3 --num-classes 5 printed a 5-class network without a word."""
    assert main(["summary", "lenet5", "--option", "num_classes=3", "--num-classes", "5"]) == 2
    assert "--num-classes 5 and --option num_classes=3: give one" in capsys.readouterr().err
    assert main(["summary", "lenet5", "--option", "num_classes=5", "--num-classes", "5", "--json"]) == 0


def test_models_lists_every_registered_model_with_its_input_size(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    for line in lines:
        name, size = line.split()[:2]
        c, h, w = get_model_entry(name).input_size
        assert size == f"{h}x{w}x{c}" and get_model_entry(name).description in line
    assert any(line.startswith("lenet5 ") and " 28x28x1 " in line for line in lines)
    starts = {line.index(get_model_entry(line.split()[0]).description) for line in lines}
    assert len(starts) == 1, "the descriptions start in one column, whatever the width of the input size"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One finished run for the module (2 epochs on synthetic MNIST); tests that write into a run copy it."""
    from conftest import write_synthetic_mnist

    root = tmp_path_factory.mktemp("trained")
    data = write_synthetic_mnist(root / "data")
    args = ["train", "lenet5", "--data-dir", data, "--epochs", "2", "--batch-size", "64", "--out-dir", root / "runs"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_OFFLINE", "1")
        assert main([str(a) for a in [*args, "--name", "demo", "--no-progress"]]) == 0
    return root / "runs" / "demo", data


def test_every_option_of_every_command_says_in_its_help_what_it_is():
    """--help is the reference a user reads first: a flag listed without a line of help (evaluate's --device,
    every --weights) sent them to the README."""
    commands = next(a for a in build_parser()._actions if a.choices and "train" in a.choices).choices
    silent = [f"{name} {a.option_strings[-1]}" for name, sub in commands.items() for a in sub._actions
              if a.option_strings and not a.help]  # fmt: skip
    assert not silent


def test_train_writes_a_complete_run_directory(trained_run, capsys):
    run_dir, _ = trained_run
    for name in (
        "config.json",
        "model.json",
        "summary.txt",
        "metrics.csv",
        "weights/last.safetensors",
        "weights/best.safetensors",
        "curves.png",
        "report.txt",
        "report.json",
        "confusion_matrix.png",
    ):
        assert (run_dir / name).is_file(), name
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,lr,seconds,val_accuracy,val_loss" and len(rows) == 3  # Keras CSVLogger
    compute = json.loads((run_dir / "compute.json").read_text())
    assert compute["train_flops"] == 3 * 833_040 * 600 * 2 + 833_040 * 200 * 2  # 2 epochs, 600 train, 200 val
    assert compute["achieved_flops_per_s"] > 0 and compute["pfs_days"] == compute["train_flops"] / 8.64e19
    report = json.loads((run_dir / "report.json").read_text())
    assert report["accuracy"] > 0.9 and len(report["confusion_matrix"]) == 10
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with open(run_dir / "predictions.csv", newline="") as f:  # one row per test image, image by image
        rows = list(csv.DictReader(f))
    assert len(rows) == report["n"] and list(rows[0]) == ["position", "label", "predicted", "probability"]
    right = sum(r["label"] == r["predicted"] for r in rows)
    assert right / len(rows) == pytest.approx(report["accuracy"])
    for true, row in enumerate(report["confusion_matrix"]):  # rows: true class, columns: predicted
        for predicted, count in enumerate(row):
            assert sum(r["label"] == str(true) and r["predicted"] == str(predicted) for r in rows) == count


def test_evaluate_reproduces_the_training_report(trained_run, capsys):
    run_dir, data_dir = trained_run
    saved = json.loads((run_dir / "report.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "precision    recall  f1-score   support" in out and "top-5 accuracy" in out
    assert f"top-1 accuracy: {saved['accuracy']:.4f}" in out


def test_evaluate_refuses_a_cache_dir_that_an_idx_run_would_ignore(trained_run, tmp_path, capsys):
    run_dir, data_dir = trained_run
    code, out, err = run_main(capsys, "evaluate", run_dir, "--cache-dir", tmp_path / "cache")
    assert code == 2 and "read without a cache" in err and str(tmp_path / "cache") in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()


def test_evaluate_on_new_labelled_data_writes_its_own_report(trained_run, tmp_path, capsys):
    """Keras' model.evaluate(x, y): new IDX files, or image files in class folders, prepared as training did."""
    from conftest import synthetic_digits

    from cnnlab.data.idx import write_idx

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    before = (run_dir / "report.json").read_bytes()
    images, labels = synthetic_digits(120, seed=9)
    (tmp_path / "new").mkdir()
    write_idx(tmp_path / "new" / "digits-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "new" / "digits-labels-idx1-ubyte.gz", labels)
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    folder = run_dir / f"eval-{tmp_path.name}_new"
    report = json.loads((folder / "report.json").read_text())
    assert report["n"] == 120 and report["accuracy"] > 0.9 and f"top-1 accuracy: {report['accuracy']:.4f}" in out
    for name in ("report.txt", "confusion_matrix.png", "mistakes.png"):
        assert (folder / name).is_file(), name
    assert (run_dir / "report.json").read_bytes() == before  # the training report is never overwritten
    pictures = tmp_path / "pictures"
    for i, (image, label) in enumerate(zip(images[:40], labels[:40])):
        (pictures / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(pictures / str(label) / f"{i}.png")
    assert main(["evaluate", str(run_dir), "--data", str(pictures)]) == 0
    assert json.loads((run_dir / f"eval-{tmp_path.name}_pictures" / "report.json").read_text())["n"] == 40
    # one of the run's classes alone is evaluated too (it was refused: "training needs at least two"), its
    # labels in the run's order
    threes = labels[:40] == 3
    only = tmp_path / "only"
    shutil.copytree(pictures / "3", only / "3")
    assert main(["evaluate", str(run_dir), "--data", str(only)]) == 0
    report = json.loads((run_dir / f"eval-{tmp_path.name}_only" / "report.json").read_text())
    matrix = np.array(report["confusion_matrix"])
    assert report["n"] == threes.sum() == matrix[3].sum() and matrix.sum() == matrix[3].sum()  # all in row "3"


def test_predict_classifies_image_files_of_any_size_and_colour(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    # Class 3 is a bar at rows 10-12 of 28; drawn dark on light, in colour, at 4x size.
    image = np.full((112, 112, 3), 255, np.uint8)
    image[40:52, 16:96] = (20, 20, 60)
    Image.fromarray(image).save(tmp_path / "three.png")
    grey = np.zeros((28, 28), np.uint8)
    grey[2 * 7 + 4 : 2 * 7 + 7, 4:24] = 230
    Image.fromarray(grey).save(tmp_path / "seven.jpg")
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(tmp_path / "three.png"), str(tmp_path / "seven.jpg")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(": ")[1].startswith("3 ") and lines[1].split(": ")[1].startswith("7 ")


def test_options_go_anywhere_among_a_commands_files_and_a_double_dash_ends_them(
    trained_run, tmp_path, capsys, monkeypatch
):
    """`predict RUN --top 2 IMAGE`, an option among explain's images or report's runs: each was refused as
    "unrecognized arguments" after a variadic positional; an option goes anywhere, as in any Unix tool, and `--`
    still makes the words after it files (here an image named like an option)."""
    run_dir, _ = trained_run
    digit = np.zeros((28, 28), np.uint8)
    digit[14:17, 4:24] = 230
    for name in ("a.png", "-b.png"):
        Image.fromarray(digit).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "predict", run_dir, "--top", "2", "a.png", "--", "-b.png")
    assert code == 0, err
    assert [line.split(": ")[0] for line in out.splitlines()] == ["a.png", "-b.png"]
    assert all(len(line.split(": ")[1].split(", ")) == 2 for line in out.splitlines()), out
    code, out, err = run_main(capsys, "explain", run_dir, "a.png", "--method", "gradcam", "a.png", "-o", "x.png")
    assert code == 0 and (tmp_path / "x.png").is_file(), err
    shutil.copytree(run_dir, tmp_path / "again")
    code, out, err = run_main(capsys, "report", run_dir, "-o", "both.html", "again")
    assert code == 0 and (tmp_path / "both.html").is_file(), err


@pytest.mark.parametrize(
    "line, named",
    [
        (["report", "--", "-x", "y"], {"run_dirs": ["-x", "y"]}),
        (["report", "-o", "both.html", "--", "-x"], {"run_dirs": ["-x"]}),
        (["predict", "--", "-run", "a.png"], {"run_dir": "-run", "images": ["a.png"]}),
        (["predict", "--top", "2", "run", "--", "-a.png"], {"run_dir": "run", "images": ["-a.png"]}),
        (["runs", "--", "-folder"], {"folder": "-folder"}),
    ],
)
def test_a_double_dash_before_the_first_file_still_ends_the_options(line, named):
    """Intermixed parsing of Pythons before 3.12.8 lost a `--` before the first positional: the words after it were
    read as options again ('unrecognized arguments: -x'), where plain argparse had taken them as files."""
    args = vars(build_parser().parse_args(line))
    assert {key: args[key] for key in named} == named


def test_the_installed_command_runs_a_dry_run(synthetic_mnist_dir, tmp_path):
    """The one case that needs a process: the console script and python -m cnnlab, end to end."""
    ok = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "lenet5", "--data-dir", str(synthetic_mnist_dir), "--dry-run",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "Epoch 1/1" in ok.stderr + ok.stdout
    # two batches in file order measure nothing (on a class-sorted folder they are one class): no accuracy shown
    assert "no accuracy is reported" in ok.stdout and "top-1 accuracy" not in ok.stdout, ok.stdout
    (run,) = [p for p in tmp_path.iterdir() if (p / "compute.json").is_file()]
    compute = json.loads((run / "compute.json").read_text())  # what the dry run did, not a whole epoch's worth
    assert compute["train_images"] == 2 * 128  # (eval_images: the whole validation split here, under 2 x 500)


def test_runs_and_the_run_page_show_a_dry_run_as_a_dry_run(synthetic_mnist_dir, tmp_path, capsys):
    """A --dry-run of --epochs 3 trains two batches of one epoch: `cnnlab runs` and its page said "1/3" epochs,
    as if a third of the run were done; they say "dry run"."""
    train = ["train", "lenet5", "--data-dir", synthetic_mnist_dir, "--out-dir", tmp_path, "--name", "dry"]
    assert run_main(capsys, *train, "--dry-run", "--epochs", "3", "--no-progress", "--no-sample")[0] == 0
    code, out, err = run_main(capsys, "runs", tmp_path)
    assert code == 0, err
    header, _, row = out.splitlines()
    assert row[header.index("epochs") :].startswith("dry run "), out
    assert "<span>epochs</span><b>dry run</b>" in (tmp_path / "dry" / "report.html").read_text()


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    """`cnnlab summary alexnet_bn | head -1`: the reader leaves early; exit 141 (128 + SIGPIPE), as a shell
    reports it, and no traceback (it was one, as an internal error)."""
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the table waits in the buffer
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "summary", "alexnet_bn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=buffered,
    )
    proc.stdout.close()  # before the command writes a line: its first write finds no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == "", err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "lenet5", "--epochs", "-1"], "--epochs is -1; expected a whole number >= 1"),
        (["train", "lenet9"], "unknown model 'lenet9'"),
        (["train", "lenet5", "--batch-size", "5000", "--dry-run"], "batch size 5000 is larger than the training set"),
        (["predict", "nope", "x.png"], "no such run directory"),
        (["summary", "lenet5", "--option", "bogus=1"], "no option bogus"),
        (["train", "lenet5", "--final-lr", "0.1", "--schedule", "step"], "--final-lr is where the cosine and linear"),
        (["train", "lenet5", "--data-dir", "x", "--data", "cats"], "--data-dir is where the IDX datasets' files are"),
        (["train", "lenet5", "--data", "cats", "--val-split", "0"], "--val-split is 0, but an image folder has no"),
        (["train", "lenet5", "--data", "cats", "--dataset", "mnist"], "--dataset is 'mnist'; with data (an image"),
        (["train", "lenet5", "--eval-batch-size", "0"], "--eval-batch-size is 0; expected a whole number >= 1"),
        (["augment-preview", "--width-shift-range", "-3"], "width_shift_range must be >= 0"),
        (["predict", "run", "x.png", "--hard"], "--hard is for a --kaggle submission; it does nothing for image"),
        (["predict", "run", "--kaggle", "test1", "--top", "2"], "--top is for image files; it does nothing for a"),
        (["compute", "--chart", "c.png", "--images", "9", "--epochs", "1"], "--images and --epochs cost a training"),
        (["evaluate", "run", "--data", "new", "--sample"], "--sample is for the run's own test set; it does nothing"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_options_give_one_line_errors(args, message, synthetic_mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    extra = ["--data-dir", synthetic_mnist_dir] if args[0] == "train" and "--data" not in args else []
    code, _, err = run_main(capsys, *args, *extra, *(["--out-dir", tmp_path / "runs"] if args[0] == "train" else []))
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("cnnlab: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists()  # refused before any file is written


def test_a_run_goes_on_the_compute_chart(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    chart = tmp_path / "eras.png"
    assert main(["compute", "--chart", str(chart), "--run", str(run_dir)]) == 0
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_compute_run_says_why_a_run_has_no_compute_to_chart(trained_run, tmp_path, capsys):
    """--run on a folder that is not a run, or a run without compute.json, said only "compute.json: file not
    found"; now RunDir's words for the folder, or why the file is not there: training writes it as it ends."""
    run_dir, _ = trained_run
    (tmp_path / "empty").mkdir()
    older, unfinished, damaged = tmp_path / "older", tmp_path / "unfinished", tmp_path / "damaged"
    for copy in (older, unfinished, damaged):
        shutil.copytree(run_dir, copy)
        (copy / "compute.json").unlink()
    (damaged / "compute.json").write_text("{")
    for name in ("report.json", "report.txt"):  # evaluated is finished: this one stopped in its second epoch
        (unfinished / name).unlink()
    metrics = (unfinished / "metrics.csv").read_text().splitlines()
    (unfinished / "metrics.csv").write_text("\n".join(metrics[:2]) + "\n")
    expected = {
        tmp_path / "nowhere": "nowhere: no such run directory",
        tmp_path / "empty": "empty: not a cnnlab run directory (none of config.json",
        older: "older/compute.json: missing (a run finished by a cnnlab older than compute.json",
        unfinished: "unfinished/compute.json: not written yet: training writes it as it ends, and this run is "
        "unfinished (1 of 2 epochs)",
        damaged: "damaged/compute.json: could not be read (JSONDecodeError",
    }
    for run, message in expected.items():
        code, _, err = run_main(capsys, "compute", "--chart", tmp_path / "c.png", "--run", run)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "c.png").exists()


def test_a_warning_of_cnnlabs_is_one_line_and_a_librarys_keeps_pythons_format(tmp_path, capsys, monkeypatch):
    """--shear-range 0.2 (the lesson's value, read in degrees as Keras >= 2.3 reads it) warns. On the command line
    that is one line, not Python's file:line report with a line of cnnlab's source; a warning raised by another
    library's code keeps Python's format (it is not cnnlab's to word)."""
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    args = ["augment-preview", str(image), "--shear-range", "0.2", "-o", str(tmp_path / "p.png")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: warning: shear_range=0.2 is read in degrees") and err.count("\n") == 1, err
    import numpy.lib  # a warning from outside cnnlab, raised while a command runs

    def run(args):
        warnings.warn_explicit("not ours", UserWarning, numpy.lib.__file__, 7)
        return 0

    monkeypatch.setattr(cnnlab.cli.augment_preview, "run", run)
    with pytest.warns(UserWarning, match="not ours") as caught:  # Python's machinery shows it, as it would
        assert main(args) == 0
    assert caught[0].filename == numpy.lib.__file__ and "cnnlab: warning" not in capsys.readouterr().err


def test_augment_preview_and_augmented_training(synthetic_mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    png = tmp_path / "preview.png"
    assert (
        main(
            ["augment-preview", "--data-dir", str(synthetic_mnist_dir), "--index", "3", "--count", "18", "-o", str(png)]
        )
        == 0
    )
    assert png.read_bytes()[:4] == b"\x89PNG"
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    assert (
        main(
            [
                "augment-preview",
                str(image),
                "--rotation-range",
                "10",
                "--fill-mode",
                "reflect",
                "-o",
                str(tmp_path / "p2.png"),
            ]
        )
        == 0
    )
    out = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "lenet5",
                "--data-dir",
                str(synthetic_mnist_dir),
                "--augment",
                "--zoom-range",
                "0.1",
                "--epochs",
                "1",
                "--out-dir",
                str(out),
                "--name",
                "aug",
                "--no-progress",
                "--compare-without",
            ]
        )
        == 0
    )
    saved = json.loads((out / "aug" / "config.json").read_text())["augment"]
    assert saved["rotation_range"] == 30 and saved["zoom_range"] == 0.1 and saved["fill_mode"] == "nearest"
    # --compare-without trained the same settings without augmentation beside it, and compared the two
    baseline = out / "aug-without-augmentation"
    assert json.loads((baseline / "config.json").read_text())["augment"] is None
    rows = {line[:23].strip(): line[23:].split() for line in (out / "aug" / "comparison.txt").read_text().splitlines()}
    for column, run in enumerate((out / "aug", baseline)):  # each column is its run's own numbers
        assert float(rows["test accuracy"][column]) == round(
            json.loads((run / "report.json").read_text())["accuracy"], 4
        )
        last_epoch = (run / "metrics.csv").read_text().splitlines()[-1].split(",")
        assert float(rows["final train accuracy"][column]) == round(float(last_epoch[1]), 4)
    assert (out / "aug" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_the_comparison_says_how_many_epochs_each_run_trained(synthetic_mnist_dir, tmp_path):
    """With --early-stopping the augmented run stopped after 2 of 8 epochs and the baseline trained all 8, yet
    comparison.txt set their 'final' accuracies side by side without a word of it."""
    out = tmp_path / "runs"
    common = ["--data-dir", str(synthetic_mnist_dir), "--out-dir", str(out), "--no-progress", "--batch-size", "64"]
    args = ["train", "lenet5", "--augment", "--compare-without", "--epochs", "8", "--early-stopping", "1"]
    assert main([*args, "--val-split", "0.2", "--name", "aug", *common]) == 0
    rows = {line[:23].strip(): line[23:].split() for line in (out / "aug" / "comparison.txt").read_text().splitlines()}
    trained = [
        len((run / "metrics.csv").read_text().splitlines()) - 1
        for run in (out / "aug", out / "aug-without-augmentation")
    ]
    assert [int(n) for n in rows["epochs trained"]] == trained and trained[0] < trained[1]


def test_a_run_written_before_the_data_interface_still_predicts(trained_run, tmp_path, capsys):
    """model.json of earlier versions held "pipeline" instead of "data"; such runs keep working."""
    import shutil

    run_dir, _ = trained_run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns(".lock"))
    info = json.loads((old / "model.json").read_text())
    info["pipeline"] = {"kind": "array"}
    del info["data"]
    (old / "model.json").write_text(json.dumps(info))
    grey = np.zeros((28, 28), np.uint8)
    grey[2 * 7 + 4 : 2 * 7 + 7, 4:24] = 230
    Image.fromarray(grey).save(tmp_path / "seven.png")
    capsys.readouterr()
    assert main(["predict", str(old), str(tmp_path / "seven.png"), "--runtime", "torch"]) == 0
    assert capsys.readouterr().out.split(": ")[1].startswith("7 ")
