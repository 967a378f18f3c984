"""The command line's contract, property-tested (issue 20).

Hypothesis generates combinations of options, values and small inputs (IDX folders with odd sizes, counts and
labels out of range; image folders with odd names, one-image classes, nested folders, mixed formats and files
that are not images; output paths that clash with inputs) and runs each through ``cnnlab.cli.main`` in this
process. Whatever it is given, a command ends in one of two ways:

- exit 0 with a true result: a training run's directory holds its weights and a config.json that records the
  values used, and a test split found outside the folder the user named is said; the files asked for exist;
- exit 2 with one line ``cnnlab: error: ...`` (argparse's: ``cnnlab CMD: error: ...``) that names something
  the user gave (a flag, a value, a file or a folder): never a traceback, and no run directory left behind to
  block the name.

And no command writes over a file of a run (weights, checkpoints). A case that is valid by construction must
succeed. One LeNet-5 run is trained once per session on a tiny synthetic MNIST and copied for each example
that may write into it. EXAMPLES examples per test, derandomized (the same cases every run).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.idx import write_idx

EXAMPLES = {"idx": 30, "images": 20, "run": 30, "model": 40}  # 120 in all, and one explicit example
ERROR_LINE = re.compile(r"cnnlab( [\w-]+)?: error: ")


# --- running a command line ----------------------------------------------------------------------------------


def invoke(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``cnnlab ARGV`` run in this process in ``cwd``; an exception that
    escapes ``main`` fails the test with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: its usage, then one error line
            code = e.code
    return code, out.getvalue(), err.getvalue()


def check_contract(argv: list[str], code: int, out: str, err: str, allowed=(0, 2)) -> None:
    """Exit 0, or exit 2 with one error line naming something the user typed; never a traceback."""
    said = f"cnnlab {' '.join(argv)}\nexit {code}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err and "internal error" not in err, said
    assert code in allowed, said
    if code != 2:
        return
    lines = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert len(lines) == 1, said
    given = {a for a in argv if a} | {Path(a).name for a in argv if "/" in a and Path(a).name}
    given |= {part for a in argv if "=" in a for part in a.split("=") if part}
    named = [g for g in given if re.search(rf"(?<![\w.-]){re.escape(g)}(?![\w-])", lines[0])]
    assert named, f"the error line names nothing the user gave\n{said}"


def digest(folder: Path) -> dict[str, str]:
    """A hash of each file under a run's weights/ and checkpoints/: what must never be written over."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("weights", "checkpoints")
        for p in sorted((folder / sub).rglob("*"))
        if p.is_file()
    }


# --- small inputs ----------------------------------------------------------------------------------------------


def digits(n: int, side: int, label_max: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images whose class k is a bright bar at a row that depends on k; labels cycle over 0..label_max, so
    every class has n // (label_max + 1) images or one more, and label_max itself occurs when n allows."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % (min(label_max, 9) + 1)).astype(np.uint8)
    if n:
        labels[-1] = label_max
    rng.shuffle(labels)
    images = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
    for i, k in enumerate(labels):
        row = (2 * int(k) + 4) % max(side - 3, 1)
        images[i, row : row + 3, :] = 230
    return images, labels


def write_mnist(folder: Path, train: int | None, test: int | None, label_max=9, side=28, gz=True, seed=0) -> None:
    """MNIST's four file names in ``folder`` (a split of None: without its files)."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", train), ("t10k", test)):
        if n is None:
            continue
        images, labels = digits(n, side, label_max, seed + (split == "t10k"))
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)


def write_image(path: Path, kind: str, seed: int) -> None:
    """An image file (by its extension), or one that only has an image's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
        return
    if kind == "text":
        path.write_text("not an image")
        return
    rng = np.random.default_rng(seed)
    side = {"tiny": 1, "wide": 4}.get(kind, 36)
    shape = (side, 90, 3) if kind == "wide" else (side, side, 3)
    picture = Image.fromarray(rng.integers(0, 255, shape).astype(np.uint8))
    if kind == "grey":
        picture = picture.convert("L")
    picture.save(path, format={".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(path.suffix.lower(), "PNG"))


STEMS = ["a", "with space", "ünï", "x.y", "-dash", "UPPER", "1", "01"]
EXTENSIONS = [".png", ".jpg", ".JPG", ".bmp", ".jpeg"]
KINDS = ["ok", "ok", "ok", "ok", "grey", "tiny", "wide", "empty", "text"]


@st.composite
def image_folders(draw) -> dict:
    """A folder of class subfolders (or Kaggle's names): per class a few files with odd names and formats."""
    layout = draw(st.sampled_from(["classes", "classes", "kaggle", "nested"]))
    # Counts drawn from lists that start with trainable ones: generation starts near the first values, and a
    # folder of one class (or one image a class) is refused, so integers(1, 4) made nearly every case a refusal.
    n_classes = draw(st.sampled_from([2, 3, 1]))
    names = st.sampled_from(["cat", "dog", "bird", "with space"])
    classes = draw(st.lists(names, min_size=n_classes, max_size=n_classes, unique=True))
    files = {}
    for c in classes:
        count = draw(st.sampled_from([3, 4, 2, 1]))
        for i in range(count):
            stem, ext, kind = (
                draw(st.sampled_from(STEMS)),
                draw(st.sampled_from(EXTENSIONS)),
                draw(st.sampled_from(KINDS)),
            )
            name = f"{c}.{i}.{stem}{ext}" if layout == "kaggle" else f"{stem}{i}{ext}"
            where = (
                f"{c}/deeper/{name}"
                if layout == "nested" and i % 2
                else (name if layout == "kaggle" else f"{c}/{name}")
            )
            files[where] = kind
    if draw(st.booleans()):
        files["notes.txt" if layout == "kaggle" else f"{classes[0]}/notes.txt"] = "text"
    return {"layout": layout, "files": files}


def make_image_folder(root: Path, spec: dict) -> Path:
    for i, (where, kind) in enumerate(sorted(spec["files"].items())):
        write_image(root / where, kind, seed=i)
    return root


def valid_image_folder(spec: dict) -> bool:
    """Class subfolders, at least two, each with two or more good images; a file that is no image (empty,
    text) is skipped with a word and does not count."""
    if spec["layout"] != "classes" or any(kind == "tiny" for kind in spec["files"].values()):
        return False
    good: dict[str, int] = {}
    for where, kind in spec["files"].items():
        good[where.split("/")[0]] = good.get(where.split("/")[0], 0) + (kind not in ("empty", "text"))
    return len(good) >= 2 and min(good.values()) >= 2


# --- the session's run -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """LeNet-5, one epoch on 48 synthetic digits (16 to test), with a best and a last checkpoint."""
    root = tmp_path_factory.mktemp("cli-contract")
    write_mnist(root / "data" / "mnist", 48, 16)
    args = ["train", "lenet5", "--data-dir", root / "data", "--out-dir", root / "runs", "--name", "base"]
    args += ["--epochs", "1", "--batch-size", "16", "--no-progress", "--no-sample", "--seed", "0"]
    assert main([str(a) for a in args]) == 0
    return root / "runs" / "base"


@pytest.fixture
def environment(trained, tmp_path_factory, monkeypatch):
    """No downloads; CNNLAB_DATA holds a full dataset that is not the one a case names (issue 20, major 2)."""
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    monkeypatch.setenv("CNNLAB_DATA", str(trained.parent.parent / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    return trained


def examples(count: int):
    """``count`` examples, the same ones every run (derandomized), without shrinking: a failure is shown as
    generated, and the run time stays bounded (each example is a command that may train)."""
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


# --- cnnlab train on an IDX folder --------------------------------------------------------------------------------

EXTRA_FLAGS = [
    ("--eval-batch-size", "0"),
    ("--eval-batch-size", "3"),
    ("--checkpoint-steps", "1"),
    ("--early-stopping", "1"),
    ("--nonfinite", "skip"),
    ("--clean-epochs", "2"),
    ("--rotation-range", "-10"),
    ("--rotation-range", "10"),
    ("--zoom-range", "2"),
    ("--option", "num_classes=2"),
    ("--option", "img_size=20"),
    ("--seed", "-1"),
    ("--warmup", "1.5"),
    ("--label-smoothing", "1"),
    ("--device", "cuda:7"),
    ("--dataset", "fashion-mnist"),
    ("--compare-without",),
    ("--augment",),
    ("--dry-run",),
    ("--schedule", "step"),
]
GOOD_EXTRA = {("--eval-batch-size", "3"), ("--checkpoint-steps", "1"), ("--early-stopping", "1"),
              ("--rotation-range", "10"), ("--augment",), ("--schedule", "step"), ("--dry-run",)}  # fmt: skip

idx_train_cases = st.fixed_dictionaries(
    {
        "train": st.integers(1, 40),
        "test": st.sampled_from([16, 16, 0, None]),
        "label_max": st.sampled_from([9, 9, 9, 10, 255]),
        "side": st.sampled_from([28, 28, 28, 20]),
        "gz": st.booleans(),
        "flat": st.booleans(),
        "epochs": st.sampled_from(["1", "1", "1", "0", "x", "1.5"]),
        "batch": st.sampled_from(["4", "4", "16", "64", "0", None]),
        "val_split": st.sampled_from(["0", "0", "0.2", "0.9999", "1", "nan", None]),
        "lr": st.sampled_from([None, None, "0.01", "0", "inf"]),
        "name": st.sampled_from([None, "run", "run", "with space", "ünï", "../up", "", "a/b"]),
        "out_dir": st.sampled_from(["runs", "runs", "nested/new/runs", "FILE"]),
        "extra": st.lists(st.sampled_from(EXTRA_FLAGS), max_size=2, unique=True),
    }
)


# Half the cases drawn from valid values alone: a dozen fields drawn freely were all valid in 2 of 30 cases,
# and a valid case must end in a true result, which is checked only when one is drawn.
valid_idx_cases = st.fixed_dictionaries(
    {
        "train": st.integers(16, 40),
        "test": st.just(16),
        "label_max": st.just(9),
        "side": st.just(28),
        "gz": st.booleans(),
        "flat": st.booleans(),
        "epochs": st.just("1"),
        "batch": st.sampled_from(["4", "16"]),
        "val_split": st.sampled_from(["0", None]),
        "lr": st.sampled_from([None, "0.01"]),
        "name": st.sampled_from([None, "run", "with space", "ünï"]),
        "out_dir": st.sampled_from(["runs", "nested/new/runs"]),
        "extra": st.lists(st.sampled_from(sorted(GOOD_EXTRA)), max_size=2, unique=True),
    }
)


def idx_case_is_valid(case: dict) -> bool:
    """Valid by construction: a full dataset of the right size and labels, values in range, a batch that fits."""
    return (
        case["test"] == 16
        and case["label_max"] == 9
        and case["side"] == 28
        and case["train"] >= 16
        and case["epochs"] == "1"
        and case["batch"] in ("4", "16")
        and case["val_split"] in ("0", None)
        and case["lr"] in (None, "0.01")
        and case["name"] in (None, "run", "with space", "ünï")
        and case["out_dir"] != "FILE"
        and set(case["extra"]) <= GOOD_EXTRA
    )


@pytest.mark.slow
@examples(EXAMPLES["idx"])
@given(case=st.one_of(valid_idx_cases, idx_train_cases))
def test_train_on_idx_folders(case, environment):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        write_mnist(data if case["flat"] else data / "mnist", case["train"], case["test"], case["label_max"],
                    case["side"], case["gz"])  # fmt: skip
        out_dir = tmp / case["out_dir"] if case["out_dir"] != "FILE" else tmp / "a-file"
        if case["out_dir"] == "FILE":
            out_dir.write_text("a file, not a folder")
        argv = ["train", "lenet5", "--data-dir", str(data), "--out-dir", str(out_dir), "--epochs", case["epochs"]]
        argv += ["--no-progress", "--no-sample", "--threads", "1"]
        for flag, key in (("--batch-size", "batch"), ("--val-split", "val_split"), ("--lr", "lr"), ("--name", "name")):
            if case[key] is not None:
                argv += [flag, case[key]]
        for extra in case["extra"]:
            argv += list(extra)
        before = sorted(out_dir.iterdir()) if out_dir.is_dir() else None
        code, out, err = invoke(argv, tmp)
        check_contract(argv, code, out, err)
        event(f"train on IDX: exit {code}")
        if code == 2:  # refused: nothing left in the output folder
            assert (sorted(out_dir.iterdir()) if out_dir.is_dir() else None) in (before, []), (argv, err)
            assert not idx_case_is_valid(case), f"a valid case was refused:\n{argv}\n{err}"
            return
        runs = [p for p in out_dir.iterdir() if (p / "config.json").exists()]
        assert len(runs) >= 1, (argv, out)
        run = out_dir / case["name"] if case["name"] else runs[0]
        config = json.loads((run / "config.json").read_text())
        assert (run / "weights" / "last.safetensors").exists(), argv
        assert config["epochs"] == int(case["epochs"]) and config["batch_size"] == int(case["batch"] or 128)
        if case["test"] is None:  # the test split came from somewhere else: it must be said
            assert os.environ["CNNLAB_DATA"] in out + err, f"test split from $CNNLAB_DATA, unsaid\n{argv}\n{out}"


# --- cnnlab train on an image folder --------------------------------------------------------------------------


@examples(EXAMPLES["images"])
@given(spec=image_folders(), val_split=st.sampled_from(["0.5", None, "0.2"]), batch=st.sampled_from(["2", "8"]))
@example(  # a valid folder in every run: two classes of odd names and formats, one skipped file
    spec={
        "layout": "classes",
        "files": {
            "cat/ünï0.JPG": "ok",
            "cat/with space1.bmp": "grey",
            "cat/x.y2.png": "ok",
            "dog/1.jpeg": "ok",
            "dog/01.png": "wide",
            "dog/notes.txt": "text",
        },
    },
    val_split="0.5",
    batch="2",
)
def test_train_on_image_folders(spec, val_split, batch, environment):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_image_folder(tmp / "images", spec)
        argv = ["train", "lenet5", "--data", str(folder), "--out-dir", str(tmp / "runs"), "--name", "r"]
        argv += ["--image-size", "32", "--crop", "28", "--epochs", "1", "--batch-size", batch, "--no-progress"]
        argv += ["--cache-dir", str(tmp / "cache"), "--threads", "1"] + (
            ["--val-split", val_split] if val_split else []
        )
        code, out, err = invoke(argv, tmp)
        check_contract(argv, code, out, err)
        event(f"image folder: exit {code}")
        if code == 2:
            assert not (tmp / "runs" / "r").exists(), f"a refused run left its folder\n{argv}\n{err}"
            assert not (valid_image_folder(spec) and val_split == "0.5" and batch == "2"), f"refused\n{argv}\n{err}"
            return
        config = json.loads((tmp / "runs" / "r" / "config.json").read_text())
        assert config["batch_size"] == int(batch)
        skipped = [w for w, kind in spec["files"].items() if kind in ("empty", "text")]
        for where in skipped:  # a file that is not an image is named, never skipped without a word
            assert Path(where).name in out + err, f"{where} skipped without a word\n{argv}\n{out}\n{err}"


# --- commands on a finished run -------------------------------------------------------------------------------

OUTPUTS = ["out.png", "out.onnx", "out.pt2", "out.csv", "sub/dir/out.png", "RUN/weights/last.safetensors",
           "RUN/config.json", "RUN", "INPUT", "folder/"]  # fmt: skip


@st.composite
def run_commands(draw) -> dict:
    command = draw(st.sampled_from(["evaluate", "predict", "predict-kaggle", "export", "report", "filters",
                                    "activations", "resume", "runs"]))  # fmt: skip
    images = draw(st.lists(st.tuples(st.sampled_from(STEMS), st.sampled_from(EXTENSIONS), st.sampled_from(KINDS)),
                           min_size=1, max_size=3))  # fmt: skip
    return {
        "command": command,
        "images": images,
        "output": draw(st.sampled_from([None, *OUTPUTS])),
        "weights": draw(st.sampled_from([None, "best", "last"])),
        "idx": draw(st.sampled_from([None, (16, 9), (16, 255), (0, 9), (8, 9)])),
        "format": draw(st.sampled_from([None, "onnx", "pt2"])),
        "top": draw(st.sampled_from([None, "1", "10", "0"])),
    }


def run_command_argv(case: dict, run: Path, tmp: Path, inputs: list[Path]) -> tuple[list[str], str | None]:
    """The command line of ``case`` on the copy ``run``, and its -o; an output path of RUN/... or INPUT points into the
    run or at an input, where nothing may be written."""
    out = case["output"]
    if out is not None:
        out = str(run / out[4:]) if out.startswith("RUN") else str(inputs[0]) if out == "INPUT" else str(tmp / out)
    command, argv = case["command"], []
    if command == "evaluate":
        argv = ["evaluate", str(run)] + (["--data", str(tmp / "new")] if case["idx"] else [])
    elif command == "predict":
        argv = ["predict", str(run), *map(str, inputs)] + (["--top", case["top"]] if case["top"] else [])
    elif command == "predict-kaggle":
        argv = ["predict", str(run), "--kaggle", str(tmp / "inputs")] + (["-o", out] if out else [])
    elif command == "export":
        argv = ["export", str(run)] + (["--format", case["format"]] if case["format"] else [])
        argv += ["-o", out] if out else []
    elif command == "report":
        argv = ["report", str(run)] + (["-o", out] if out else [])
    elif command in ("filters", "activations"):
        argv = [command, str(run)] + ([str(inputs[0])] if command == "activations" else [])
        argv += ["-o", out] if out else ["-o", str(tmp / f"{command}.png")]
    elif command == "resume":
        argv = ["train", "--resume", str(run), "--no-progress"]
    elif command == "runs":
        argv = ["runs", str(run.parent)]
    if case["weights"] and command not in ("report", "resume", "runs"):
        argv += ["--weights", case["weights"]]
    return argv, out


@examples(EXAMPLES["run"])
@given(case=run_commands())
def test_commands_on_a_run(case, environment):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "runs" / "base"
        shutil.copytree(environment, run)
        kept = digest(run)
        inputs = []
        for i, (stem, ext, kind) in enumerate(case["images"]):
            inputs.append(tmp / "inputs" / f"{stem}{ext}")
            write_image(inputs[-1], kind, seed=i)
        if case["idx"]:  # new labelled data for evaluate --data
            write_mnist(tmp / "new", None, case["idx"][0], label_max=case["idx"][1], seed=5)
        argv, output = run_command_argv(case, run, tmp, inputs)
        code, out, err = invoke(argv, tmp)
        check_contract(argv, code, out, err)
        event(f"{case['command']}: exit {code}")
        assert digest(run) == kept, f"the run's weights or checkpoints were written over\n{argv}\n{out}"
        if code == 0 and case["command"] == "predict":  # one line per image file, in the order given
            lines = [line for line in out.splitlines() if line.strip()]
            assert len(lines) >= len(inputs), (argv, out)
        if code == 0 and case["command"] == "predict-kaggle":
            rows = Path(output or tmp / "submission.csv").read_text().splitlines()[1:]
            ids = [row.split(",")[0] for row in rows]
            assert len(ids) == len(set(ids)), f"two images got the same id\n{argv}\n{rows}"


# --- summary, advise, compute: a model from flags ----------------------------------------------------------------

SIZES = ["28x28x1", "28x28", "32x32x3", "227x227x3", "1x1x1", "0x28x1", "28x28x1x1", "axb", "5000x5000x1"]
OPTIONS = ["num_classes=2", "num_classes=0", "num_classes=\"10\"", "img_size=32", "dropout=2", "bogus=1",
           "in_chans=3", "text=INPUT => CONV => FC", "init=xavier", "=1"]  # fmt: skip


@examples(EXAMPLES["model"])
@given(
    command=st.sampled_from(["summary", "advise", "compute"]),
    model=st.sampled_from(
        ["lenet5", "alexnet", "pattern", "INPUT => CONV(8) => RELU => POOL => FC", "lenet9", "INPUT => => FC", ""]
    ),  # fmt: skip
    size=st.sampled_from([None, *SIZES]),
    classes=st.sampled_from([None, "2", "0", "-1"]),
    options=st.lists(st.sampled_from(OPTIONS), max_size=2, unique=True),
)
def test_model_commands(command, model, size, classes, options, environment, tmp_path_factory):
    argv = [command, model] + (["--input", size] if size else []) + (["--num-classes", classes] if classes else [])
    for option in options:
        argv += ["--option", option]
    code, out, err = invoke(argv, tmp_path_factory.getbasetemp())
    check_contract(argv, code, out, err, allowed=(0, 1, 2) if command == "advise" else (0, 2))  # advise: 1 = warnings
    event(f"{command}: exit {code}")
    if code == 0 and command == "summary":
        assert "Total params" in out, (argv, out)
