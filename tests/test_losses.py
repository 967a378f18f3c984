"""The training loss against Keras' own numbers (fixtures written by scripts/make_keras_loss_fixtures.py)."""

import json
from pathlib import Path

import pytest
import torch

from cnnlab.train.loop import classification_loss

CASES = json.loads((Path(__file__).parent / "fixtures" / "keras_losses.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['classes']}classes-s{c['label_smoothing']}")
def test_label_smoothing_means_what_keras_means(case):
    logits = torch.tensor(case["logits"])
    labels = torch.tensor(case["labels"])
    loss = classification_loss(logits, labels, case["label_smoothing"])
    assert loss.item() == pytest.approx(case["keras_loss"], rel=1e-5, abs=1e-6)
