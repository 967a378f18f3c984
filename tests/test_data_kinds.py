"""A kind of data is one class and one registration (data/source.py): a third kind, made here, trains through a
run directory and is evaluated and predicted from it without a change anywhere in cnnlab; and the data layer
imports no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_digits
from PIL import Image

import cnnlab.data
from cnnlab.cli import main
from cnnlab.data import source as source_module
from cnnlab.data.datasets import ArrayDataset
from cnnlab.data.loader import ONE_PROCESS, InMemoryLoader, InputNorm
from cnnlab.errors import UsageError


class NpzSource:
    """Digits in one .npz file (x_train, y_train, x_test, y_test), written from scratch against the interface."""

    kind = "npz"
    caches = False  # read into memory, as arrays are

    def __init__(self, path: Path):
        arrays = np.load(path)
        self.name, self.classes, self.image_size = path.name, tuple("0123456789"), (1, 28, 28)
        self.notes, self.skipped = [f"digits from {path}"], []
        data = {s: self._dataset(arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in ("train", "test")}
        self.splits = {"train": data["train"], "val": data["test"], "test": data["test"]}

    def _dataset(self, x, y) -> ArrayDataset:
        return ArrayDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64)), self.classes)

    @classmethod
    def opens(cls, cfg) -> bool:
        return bool(cfg.data) and cfg.data.endswith(".npz")

    @classmethod
    def open(cls, cfg, allow_sample=True, echo=print, training=True) -> NpzSource:
        return cls(Path(cfg.data))

    @classmethod
    def for_evaluation(cls, path, description, classes, cache_dir=None, echo=print) -> NpzSource:
        return cls(Path(path))

    @staticmethod
    def file_reader(description, invert="auto"):
        return lambda path: torch.from_numpy(np.asarray(Image.open(path).convert("L").resize((28, 28))).copy())[None]

    def size(self, split):
        return len(self.splits[split])

    def labels(self, split):
        return self.splits[split].labels

    def loader(self, split, batch_size, device, *, train=False, seed=0, shard=ONE_PROCESS, view=None):
        return InMemoryLoader(
            self.splits[split], batch_size, device, train=train, seed=seed, shard=shard or cnnlab.data.Shard()
        )

    def images(self, split, positions):
        return self.splits[split].images[torch.as_tensor(positions)]

    def input_norm(self):
        return InputNorm.of(self.splits["train"].images)

    def describe(self):
        return {"kind": self.kind, "dataset": self.name, "input_size": list(self.image_size)}

    def eval_views(self):
        return {"": ("full",)}


SIZE = ["--image-size", "28", "--crop", "28"]  # run.py checks the model's input against --crop whenever --data is set


def write_npz(path: Path, seed: int) -> Path:
    (x, y), (xt, yt) = synthetic_digits(600, seed), synthetic_digits(200, seed + 1)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


@pytest.fixture
def npz_kind(monkeypatch):
    monkeypatch.setattr(source_module, "KINDS", dict(source_module.KINDS))  # registered for this test only
    return source_module.register(NpzSource)


def test_a_new_kind_is_one_class_and_one_registration(npz_kind, tmp_path, capsys):
    data = write_npz(tmp_path / "digits.npz", seed=1)
    runs = tmp_path / "runs"
    common = ["--out-dir", str(runs), "--no-progress"]
    assert main(["train", "lenet5", "--data", str(data), "--epochs", "2", "--name", "npz", *common, *SIZE]) == 0
    run = runs / "npz"
    out = capsys.readouterr().out
    assert f"digits from {data}" in out and f"digits from {data}" in (run / "notes.txt").read_text()
    assert main(["evaluate", str(run)]) == 0  # its own test split, opened again from config.json
    own = capsys.readouterr().out
    other = write_npz(tmp_path / "more.npz", seed=5)
    assert main(["evaluate", str(run), "--data", str(other)]) == 0  # new data of the same kind
    assert "200 images" in capsys.readouterr().out
    picture, labels = synthetic_digits(1, seed=9)
    Image.fromarray(picture[0]).save(tmp_path / "digit.png")
    assert main(["predict", str(run), str(tmp_path / "digit.png")]) == 0
    assert capsys.readouterr().out.split(": ")[1].startswith(str(labels[0]))  # the bars are learnt in 2 epochs
    assert "accuracy" in own


def test_registration_names_what_a_kind_lacks(monkeypatch):
    monkeypatch.setattr(source_module, "KINDS", dict(source_module.KINDS))

    class Half:
        kind = "half"

        @classmethod
        def opens(cls, cfg):
            return False

    lacks = "open, for_evaluation, file_reader, caches"
    with pytest.raises(TypeError, match=f"Half cannot be a kind of data: it lacks {lacks}"):
        source_module.register(Half)
    with pytest.raises(UsageError, match="unknown data kind 'half' in the run's model.json; known: array, idx, folder"):
        source_module.read_file({"kind": "half"})

    class Older(NpzSource):  # written against the interface before open() took training
        kind = "older"

        @classmethod
        def open(cls, cfg, allow_sample=True, echo=print):
            return super().open(cfg, allow_sample, echo)

    with pytest.raises(
        TypeError, match=r"Older .* lacks open's training argument: open\(cfg, allow_sample, echo, training\)"
    ):
        source_module.register(Older)

    class Renamed(NpzSource):  # open_source passes its arguments by position: their names are the kind's own
        kind = "renamed"

        @staticmethod
        def open(config, *rest):
            return NpzSource.open(config, *rest)

    assert source_module.register(Renamed) is Renamed


def imports_of(path: Path, package: str) -> set[str]:
    """The cnnlab.data modules a file imports, inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {f"{package}.{node.module}"} if node.module else {f"{package}.{a.name}" for a in node.names}
    return found


def test_the_data_layer_has_no_import_cycle():
    folder = Path(cnnlab.data.__file__).parent
    graph = {f"cnnlab.data.{p.stem}": imports_of(p, "cnnlab.data") for p in folder.glob("*.py") if p.stem != "__init__"}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles
    assert not graph["cnnlab.data.source"] & {
        "cnnlab.data.arrays",
        "cnnlab.data.imagedata",
    }  # the protocol is no factory
