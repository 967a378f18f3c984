"""A real training process killed with SIGKILL (also in the middle of writing a checkpoint), or stopped
with SIGTERM, then resumed, ends with the same weights, bit for bit, as one that was never stopped."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.checkpoint import read_weights

EPOCHS, BATCH, EVERY = "3", "32", "5"


def train_cmd(data_dir, out_dir, name, *extra):
    return [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "lenet5",
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(out_dir),
        "--name",
        name,
        "--epochs",
        EPOCHS,
        "--batch-size",
        BATCH,
        "--checkpoint-steps",
        EVERY,
        "--no-progress",
        "--deterministic",  # exact on a GPU too (CPU runs are exact anyway)
        *extra,
    ]


def resume(out_dir, name):
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--resume", str(out_dir / name), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def final_weights(run_dir):
    state, meta = read_weights(run_dir / "weights" / "last.safetensors")
    return state, meta


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from conftest import write_synthetic_mnist

    root = tmp_path_factory.mktemp("kill")
    data = write_synthetic_mnist(root / "data") / "mnist"
    out = root / "runs"
    done = subprocess.run(train_cmd(data.parent, out, "uninterrupted"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return data.parent, out, final_weights(out / "uninterrupted")


def assert_same_as_reference(run_dir, reference_weights):
    state, meta = final_weights(run_dir)
    ref_state, ref_meta = reference_weights
    assert state.keys() == ref_state.keys()
    for k in state:
        assert torch.equal(state[k], ref_state[k]), k
    assert meta["val_accuracy"] == ref_meta["val_accuracy"] and meta["loss"] == ref_meta["loss"]


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_resume(reference):
    data_dir, out, ref = reference
    # Which checkpoint write (of 12) to die in, seeded. Not the first: dying in it leaves nothing to resume, a
    # refusal test_run_errors checks (unseeded, this test failed 1 time in 10 on that draw).
    nth = random.Random(14).randint(2, 10)
    env = {**os.environ, "CNNLAB_CHECKPOINT_PAUSE": f"before-manifest:{nth}"}
    proc = subprocess.Popen(
        train_cmd(data_dir, out, f"killed-write-{nth}"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = out / f"killed-write-{nth}" / "checkpoints" / "paused-before-manifest"
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "the writer never reached the pause"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = out / f"killed-write-{nth}"
    half = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert half, "the killed writer left its half-written checkpoint behind"
    marker.unlink()
    resume(out, f"killed-write-{nth}")
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert_same_as_reference(run_dir, ref)


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume(reference):
    data_dir, out, ref = reference
    proc = subprocess.Popen(train_cmd(data_dir, out, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = out / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir())):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # a seeded moment after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume(out, "killed")
    assert_same_as_reference(out / "killed", ref)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_says_how_to_resume(reference):
    data_dir, out, ref = reference
    proc = subprocess.Popen(
        train_cmd(data_dir, out, "terminated"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoints = out / "terminated" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir())):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert proc.returncode == 143  # 128 + SIGTERM, as shells report it
    assert "interrupted by SIGTERM" in err and f"cnnlab train --resume {out / 'terminated'}" in err
    resume(out, "terminated")
    assert_same_as_reference(out / "terminated", ref)


def test_two_runs_cannot_share_a_run_directory(reference):
    data_dir, out, _ = reference
    # The first run pauses inside its first checkpoint write, holding the run's lock, until it is killed.
    env = {**os.environ, "CNNLAB_CHECKPOINT_PAUSE": "before-manifest:1"}
    first = subprocess.Popen(
        train_cmd(data_dir, out, "locked"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    marker = out / "locked" / "checkpoints" / "paused-before-manifest"
    deadline = time.time() + 120
    while not marker.exists():
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.02)
    try:
        second = subprocess.run(train_cmd(data_dir, out, "locked"), capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert "another training process" in second.stderr and "Traceback" not in second.stderr
