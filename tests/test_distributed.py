"""Several processes with PyTorch's launcher (torchrun, gloo on the CPU): the same steps as one process, one
run directory, resumes across world sizes and after a killed process, two launchers as two machines, and
faults that end with a message instead of a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_mnist

from cnnlab.checkpoint import read_weights
from cnnlab.errors import UsageError
from cnnlab.train import Runtime

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_tree(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``subprocess.run`` for a command that starts torchrun: on a timeout its processes go too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    with killed_on_failure(proc):
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextmanager
def killed_on_failure(proc: subprocess.Popen):
    """Kill ``proc`` and everything under it when the block fails, and show the end of its output: torchrun
    starts its processes in sessions of their own, so a test that timed out would otherwise leave them computing
    beside the tests after it. The root goes first, so that a torchrun with restarts left starts no new ones."""
    try:
        yield
    except BaseException:
        tree = descendants(proc.pid)
        for pid in [proc.pid, *tree]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        print("the end of its output:", (out or "")[-3000:], (err or "")[-3000:], sep="\n")
        raise


def descendants(parent: int) -> list[int]:
    found = children(parent)
    return found + [d for c in found for d in descendants(c)]


def children(parent: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and parent_of(p) == parent]


def parent_of(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def worker(out: Path, mode: str, nproc: int, run_dir: Path | None = None) -> None:
    args = [str(WORKER), str(out), mode, *([str(run_dir)] if run_dir else [])]
    cmd = [*TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", *args] if nproc > 1 else [sys.executable, *args]
    done = run_tree(cmd)
    assert done.returncode == 0, done.stderr[-3000:]


def records(out: Path, mode: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"record-{mode}-rank*.json"))]


def samples_per_step(recs: list[dict]) -> dict[int, list[int]]:
    """Global step -> the sorted checksums of the images all processes saw in it."""
    steps: dict[int, list[int]] = {}
    for rec in recs:
        for step, sums in rec["seen"].items():
            steps.setdefault(int(step), []).extend(sums)
    return {k: sorted(v) for k, v in steps.items()}


def loss_per_step(recs: list[dict]) -> dict[int, float]:
    """Global step -> the mean over processes of their (equal-sized) shards' mean losses: the global loss."""
    steps = sorted(int(k) for k in recs[0]["losses"])
    return {s: sum(r["losses"][str(s)] for r in recs) / len(recs) for s in steps}


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = read_weights(a)[0], read_weights(b)[0]
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    worker(one, "full", 1)
    worker(two, "full", 2)
    single, pair = records(one, "full"), records(two, "full")
    assert len(pair) == 2 and {r["world"] for r in pair} == {2}
    steps = samples_per_step(single)
    assert len(steps) == 40  # 2 epochs of 20 global batches of 32
    assert samples_per_step(pair) == steps  # the same images in every global batch
    assert all(len(r["seen"]["0"]) == 16 for r in pair)  # each process half of each global batch
    loss_one, loss_two = loss_per_step(single), loss_per_step(pair)
    assert max(abs(loss_one[s] - loss_two[s]) for s in range(20)) < 1e-5
    assert max_weight_difference(one / "weights-full.safetensors", two / "weights-full.safetensors") < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [(2, 1), (1, 2)])
def test_resume_with_another_number_of_processes(tmp_path, first, second):
    reference, out = tmp_path / "reference", tmp_path / "out"
    reference.mkdir(), out.mkdir()
    worker(reference, "full", 1)
    worker(out, "stop", first)  # the first epoch, and its checkpoint
    assert list((out / "run" / "checkpoints").iterdir())
    worker(out, "resume", second, out / "run")
    resumed = samples_per_step(records(out, "resume"))
    expected = samples_per_step(records(reference, "full"))
    assert sorted(resumed) == list(range(20, 40))  # the second epoch only
    assert resumed == {s: expected[s] for s in range(20, 40)}  # in the same order as an unbroken run
    difference = max_weight_difference(reference / "weights-full.safetensors", out / "weights-resume.safetensors")
    assert difference < 1e-5  # gradients summed in another order across processes: float rounding only


# --- the command line under torchrun ---------------------------------------------------------------------


def cnnlab(*args: str) -> list[str]:
    return ["-m", "cnnlab", "train", "lenet5", *args]


def train_args(data: Path, out: Path, name: str, epochs: int = 2) -> list[str]:
    return [
        "--data-dir",
        str(data),
        "--out-dir",
        str(out),
        "--name",
        name,
        "--epochs",
        str(epochs),
        "--batch-size",
        "64",
        "--no-progress",
        "--no-sample",
        "--threads",
        "1",
    ]


def files_of(run: Path) -> set[str]:
    """The run's files; a TensorBoard event file by its folder (its name holds the time, host and pid)."""
    names = set()
    for p in run.rglob("*"):
        if p.is_file() and p.name != ".lock":
            name = str(p.relative_to(run))
            names.add(str(p.parent.relative_to(run)) + "/events" if "tfevents" in p.name else name)
    return names


@pytest.mark.slow
def test_cli_two_processes_one_run_directory_and_the_full_test_set(tmp_path):
    data = write_synthetic_mnist(tmp_path / "data")
    out = tmp_path / "runs"
    single = subprocess.run(
        [sys.executable, *cnnlab(*train_args(data, out, "single"))], capture_output=True, text=True, env=env()
    )
    assert single.returncode == 0, single.stderr[-3000:]
    double = run_tree([sys.executable, *cnnlab(*train_args(data, out, "double"), "--nproc", "2")])
    assert double.returncode == 0, double.stderr[-3000:]
    runs = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert runs == ["double", "single"]  # one directory per run
    assert not list((out / ".torchrun").iterdir())  # the restart marker is gone once the run is complete
    assert files_of(out / "double") == files_of(out / "single")  # only rank 0 wrote, and all of it
    report = json.loads((out / "double" / "report.json").read_text())
    assert report["n"] == 200 and sum(map(sum, report["confusion_matrix"])) == 200  # every test image once
    assert double.stdout.count("Total params") == 1  # rank 0 alone prints
    assert json.loads((out / "double" / "environment.json").read_text())["processes"] == 2
    first = json.loads((out / "single" / "report.json").read_text())["accuracy"]
    assert abs(report["accuracy"] - first) <= 0.015  # 200 images: at most three predictions apart


def worker_pids(parent: int, local_rank: int) -> list[int]:
    """Processes under ``parent`` (torchrun) whose environment says LOCAL_RANK=local_rank."""
    found = []
    for pid in children(parent):
        with suppress(OSError):
            if f"LOCAL_RANK={local_rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
    return found


def big_synthetic_mnist(root: Path) -> Path:
    """4,000 training images: long enough an epoch to kill a process in the middle of a run."""
    return write_synthetic_mnist(root, train=4000)


def wait_for_first_checkpoint(proc: subprocess.Popen, run: Path) -> None:
    checkpoints = run / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir())):
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_process_restarts_and_the_run_ends_as_an_unbroken_one(tmp_path):
    data = big_synthetic_mnist(tmp_path / "data")
    out = tmp_path / "runs"
    # One restart allowed: with torchrun's store shared across attempts, 6 restarts of 8 on a loaded 2-core
    # machine read a dead process's address and failed or hung; --nproc gives each attempt a store of its own.
    launch = [sys.executable, *cnnlab("--nproc", "2", "--max-restarts", "1")]
    unbroken = run_tree([*launch, *train_args(data, out, "unbroken", epochs=3)])
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    proc = subprocess.Popen(
        [*launch, *train_args(data, out, "killed", epochs=3)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    with killed_on_failure(proc):
        wait_for_first_checkpoint(proc, out / "killed")
        (torchrun,) = children(proc.pid)
        victims = worker_pids(torchrun, local_rank=1)
        assert victims and (out / "killed" / "metrics.csv").read_text().count("\n") < 4  # mid-run
        os.kill(victims[0], signal.SIGKILL)
        log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    assert "resuming from" in log  # the restarted attempt continued the run, nobody typed --resume
    assert "shares one store across attempts" not in log  # --nproc started torchrun with a store per attempt
    a, b = out / "unbroken" / "weights" / "last.safetensors", out / "killed" / "weights" / "last.safetensors"
    # Every step is seeded from (seed, step) and two processes' gradient sums are a + b in any order: exact.
    assert max_weight_difference(a, b) == 0.0
    assert len((out / "killed" / "metrics.csv").read_text().splitlines()) == 4  # header + 3 epochs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_launchers_on_one_machine_as_two_nodes(tmp_path):
    data = write_synthetic_mnist(tmp_path / "data")
    out = tmp_path / "runs"
    port = free_port()
    launch = [
        *TORCHRUN,
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--max-restarts=1",
    ]
    nodes = [
        subprocess.Popen(
            [*launch, *cnnlab(*train_args(data, out, "two-nodes", epochs=1))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
        )
        for _ in range(2)
    ]
    with killed_on_failure(nodes[0]), killed_on_failure(nodes[1]):
        logs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    # torchrun by hand, allowed to restart, with its store shared across attempts: rank 0 says how to avoid it
    assert sum(log.count("shares one store across attempts") for log in logs) == 1
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["two-nodes"]
    assert json.loads((out / "two-nodes" / "environment.json").read_text())["processes"] == 2
    assert json.loads((out / "two-nodes" / "report.json").read_text())["n"] == 200


def launched_on_two(tmp_path: Path, name: str) -> subprocess.Popen:
    """cnnlab train --nproc 2 of 3 epochs on 4,000 images into tmp_path/runs/NAME, started and left running."""
    data = big_synthetic_mnist(tmp_path / "data")
    args = cnnlab(*train_args(data, tmp_path / "runs", name, epochs=3), "--nproc", "2")
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )


@pytest.mark.slow
def test_a_process_dying_mid_run_ends_it_with_a_message_and_keeps_the_checkpoints(tmp_path):
    out = tmp_path / "runs"
    proc = launched_on_two(tmp_path, "dies")
    with killed_on_failure(proc):
        wait_for_first_checkpoint(proc, out / "dies")
        checkpoints = out / "dies" / "checkpoints"
        (torchrun,) = children(proc.pid)
        victims = worker_pids(torchrun, local_rank=1)
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        start = time.time()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode not in (0, None) and time.time() - start < 60  # no hang
    assert "a training process failed" in err and "--resume" in err
    assert any(p.name.startswith("step-") for p in checkpoints.iterdir())  # nothing checkpointed is lost


def test_nproc_says_once_what_would_stop_every_process(tmp_path, capsys):
    from cnnlab.cli import main

    data = write_synthetic_mnist(tmp_path / "data")
    base = ["train", "lenet5", "--data-dir", str(data), "--out-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main([*base, "--nproc", "3"]) == 2  # batch 128 does not divide among 3
    assert "must divide among 3 processes" in capsys.readouterr().err
    assert main([*base, "--max-restarts", "2"]) == 2  # without --nproc it would do nothing
    assert "--max-restarts goes with --nproc N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--nproc", "2", "--sync-bn"]) == 2
        assert "--sync-bn needs GPUs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing started


@pytest.mark.slow
def test_a_signal_to_the_launcher_reaches_every_process_which_checkpoint_and_end(tmp_path):
    """`kill` of cnnlab train --nproc 2 (a scheduler stopping a job): the launcher ended at once and left torchrun
    and both processes training on, holding the run's lock. It passes the signal on now: each process writes its
    checkpoint and ends, one line says so, and the launcher exits 143."""
    from cnnlab.rundir import lock_holder

    out = tmp_path / "runs"
    proc = launched_on_two(tmp_path, "stopped")
    with killed_on_failure(proc):
        wait_for_first_checkpoint(proc, out / "stopped")
        tree = descendants(proc.pid)
        assert len(tree) >= 3  # torchrun and its two processes
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert not [pid for pid in tree if Path(f"/proc/{pid}").exists()]  # nothing left computing
    assert err.count("cnnlab: interrupted by") == 1 and "a training process failed" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]  # torchrun's, of the signal it passed on: 30 lines
    assert lock_holder(out / "stopped") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "mistake, said",
    [
        (["--data-dir", "no/such/folder"], "folder: no such folder"),  # rank 0 finds it while the others wait for it
        (["--batch-size", "1024", "--max-restarts", "1"], "batch size 1024 is larger than the training set"),  # all
    ],
)
def test_a_mistake_the_processes_find_is_one_line_and_status_2(tmp_path, mistake, said):
    """torchrun reports 1 for any failure: a missing --data-dir, named by the processes, ended in 'a training
    process failed ... continue with --resume' and status 1. Then in status 2, but after the message came rank 1's
    gloo traceback (it lost rank 0) and torchrun's report of failed processes, 40 lines; and --max-restarts started
    the processes again to make the same mistake. Each mistake is one line now."""
    data = write_synthetic_mnist(tmp_path / "data")
    args = ["--data-dir", str(data), "--out-dir", str(tmp_path / "runs"), "--no-progress", *mistake, "--nproc", "2"]
    done = run_tree([sys.executable, *cnnlab(*args)])
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: ") and said in lines[0], done.stderr[-3000:]


OWN_ERROR = """
import sys
from pathlib import Path
from cnnlab.errors import DataError
from cnnlab.train import Runtime

class FolderRefused(DataError):  # a data kind's own error, made from two values: it pickles, but does not unpickle
    def __init__(self, folder, why):
        super().__init__(f"{folder}: {why}")

rt = Runtime("cpu")
try:
    with rt.main_first():
        if rt.is_main:
            raise FolderRefused("photos", "the kind's own refusal")
except DataError as e:  # as rank 0 catches it, so do the others
    Path(sys.argv[1], f"rank{rt.rank}.txt").write_text(f"{e} (alike {e.alike}, status {e.exit_code})")
"""


def test_a_mistake_of_rank_0_ends_the_others_whatever_its_error_class(tmp_path):
    """The others end with rank 0's words, status and kind of error (errors.py's, as rank 0's is one); the error
    object itself went to them before, and a class of its own (a registered data kind's) failed to unpickle there:
    a traceback on every other process."""
    (tmp_path / "own_error.py").write_text(OWN_ERROR)
    done = run_tree([*TORCHRUN, "--standalone", "--nproc-per-node=2", str(tmp_path / "own_error.py"), str(tmp_path)])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for rank in (0, 1):
        said = (tmp_path / f"rank{rank}.txt").read_text()
        assert said == "photos: the kind's own refusal (alike True, status 2)"


@pytest.mark.slow
def test_a_warning_of_the_settings_is_said_once_by_two_processes(tmp_path):
    """--augment's shear of 0.2 (read in degrees) warns: with --nproc 2 each process said it, two lines."""
    data = write_synthetic_mnist(tmp_path / "data")
    done = run_tree(
        [sys.executable, *cnnlab(*train_args(data, tmp_path, "warned"), "--augment", "--dry-run", "--nproc", "2")]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("cnnlab: warning: shear_range=0.2 is read in degrees") == 1, done.stderr[-3000:]


def test_a_restart_before_the_first_checkpoint_starts_the_run_over(tmp_path, monkeypatch, capsys):
    """Under --max-restarts, a process that died in the first epoch (AlexNet's is 6 minutes here) made every
    restarted attempt fail with 'no checkpoint to resume from': the restart now trains the run from the start."""
    from cnnlab.cli import main

    data = write_synthetic_mnist(tmp_path / "data")
    args = ["train", "lenet5", "--data-dir", str(data), "--out-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main([*args, "--name", "first", "--epochs", "1", "--checkpoint-every", "0"]) == 0
    (tmp_path / "runs" / ".torchrun").mkdir()
    (tmp_path / "runs" / ".torchrun" / "attempt").write_text(str(tmp_path / "runs" / "first"))
    for name, value in (("RANK", "0"), ("TORCHELASTIC_RUN_ID", "attempt"), ("TORCHELASTIC_RESTART_COUNT", "1")):
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main([*args, "--epochs", "1"]) == 0  # the restarted attempt's command line: no --name, no --resume
    out = capsys.readouterr().out
    assert "resuming from" not in out and f"run directory: {tmp_path / 'runs' / 'first'}" in out
    assert len((tmp_path / "runs" / "first" / "metrics.csv").read_text().splitlines()) == 2  # one epoch, anew


@pytest.mark.parametrize(
    "written, torchrun, expected",
    [
        ({"0-0": 143, "0-1": 143}, 1, 143),  # a signal to one process: each wrote its checkpoint
        ({"0-0": 143}, 1, 1),  # the other was killed outright (OOM, SIGKILL): a failure, not an interruption
        ({"0-0": 2, "0-1": 1}, 1, 2),  # rank 0 named a mistake; rank 1 lost contact with it
        ({"0-0": 2, "0-1": 2}, 0, 2),  # a mistake every process ended with: they kept it from torchrun
        ({"0-0": 1, "0-1": 2}, 1, 1),  # a crash of rank 0 is no mistake of the user's
        ({"0-0": 2, "0-1": 2, "1-0": 1, "1-1": 1}, 1, 1),  # only the last attempt counts (--max-restarts)
        ({"0-0": 0, "0-1": 0}, 0, 0),
    ],
)
def test_the_launcher_tells_a_failure_from_a_mistake_and_an_interruption(
    written, torchrun, expected, monkeypatch, capsys
):
    """torchrun's own status is 1 for any failure: the launcher reads what each process of its last attempt said."""
    from cnnlab.train import distributed

    class FakeTorchrun:
        def __init__(self, cmd, env, start_new_session):
            for name, status in written.items():
                Path(env[distributed.STATUS_DIR], name).write_text(str(status))

        def wait(self):
            return torchrun

    monkeypatch.setattr(distributed.subprocess, "Popen", FakeTorchrun)
    assert distributed.launch(["train", "lenet5"], nproc=2) == expected
    assert ("a training process failed" in capsys.readouterr().err) == (expected == 1)


def test_a_bad_precision_is_refused_before_the_process_joins_its_group_or_sets_threads(monkeypatch):
    """A Python caller's Runtime(precision=...) typo: one UsageError, not a wait for the other processes (or
    torch.distributed's error about them), and this process's thread count left as it was."""
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts it, with no rendezvous to reach
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # set in a shell under torchrun or SLURM: a join would wait
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    with pytest.raises(UsageError, match="precision must be fp32, bf16 or fp16, got 'fp64'"):
        Runtime("cpu", precision="fp64", threads=threads + 1, timeout=5)
    assert torch.get_num_threads() == threads
