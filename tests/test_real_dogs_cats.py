"""Real photographs: a small network trained for a few seconds on the shared 2,000-image Dogs vs. Cats sample
(Kaggle's file names) must clearly beat chance on the held-out images. Skipped when the sample is absent."""

import json
import os
from pathlib import Path

import pytest
from conftest import REPO

from cnnlab.cli import main


def dogs_vs_cats() -> Path | None:
    for root in (os.environ.get("CNNLAB_DATA"), REPO.parent / "shared" / "data"):
        if root and (Path(root) / "dogs-vs-cats-small" / "train" / "cat.0.jpg").is_file():
            return Path(root) / "dogs-vs-cats-small" / "train"
    return None


@pytest.mark.slow
@pytest.mark.skipif(dogs_vs_cats() is None, reason="Dogs vs. Cats sample not found (../shared/data or CNNLAB_DATA)")
def test_small_cnn_beats_chance_on_held_out_dogs_and_cats(tmp_path, capsys):
    # 40-pixel images, random 32-pixel crops and flips; conv 32-64-128 with pooling, then a dense layer.
    code = main(
        [
            "train", "pattern", "--data", str(dogs_vs_cats()), "--image-size", "40", "--crop", "32",
            "--option", "img_size=32", "--option", "N=1", "--option", "M=3", "--option", "filters=32",
            "--epochs", "15", "--batch-size", "64", "--cache-dir", str(tmp_path / "cache"),
            "--out-dir", str(tmp_path / "runs"), "--name", "dogs-cats", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "runs" / "dogs-cats" / "report.json").read_text())
    assert report["n"] == 200 and [sum(row) for row in report["confusion_matrix"]] == [100, 100]  # 10%, stratified
    # A model at chance gets 50% +- 3.5% (one standard deviation of 200 coin flips); 62% is 3.4 of them above,
    # p < 0.0004. This configuration measured 66.5-74% across seeds (70% with this seed).
    assert report["accuracy"] >= 0.62, report["accuracy"]
