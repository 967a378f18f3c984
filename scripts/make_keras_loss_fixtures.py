"""Write tests/fixtures/keras_losses.json: Keras' categorical cross-entropy with label smoothing, the oracle
of cnnlab's ``--label-smoothing`` (tests/test_losses.py reads it without Keras).

Keras' ``CategoricalCrossentropy(from_logits=True, label_smoothing=s)`` on one-hot targets (the lesson's
``LabelBinarizer`` labels) for fixed random logits, 2 and 10 classes, several s. Regenerate with the
environment of scripts/make_keras_fixtures.py:

    /tmp/kerasenv/bin/python scripts/make_keras_loss_fixtures.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_losses.json"


def main() -> None:
    import keras

    rng = np.random.default_rng(0)
    cases = []
    for classes in (2, 10):
        logits = (rng.normal(size=(16, classes)) * 3).astype(np.float32)
        labels = rng.integers(0, classes, 16)
        one_hot = np.eye(classes, dtype=np.float32)[labels]
        for smoothing in (0.0, 0.1, 0.2, 0.5):
            loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
            cases.append(
                {
                    "classes": classes,
                    "label_smoothing": smoothing,
                    "logits": logits.tolist(),
                    "labels": labels.tolist(),
                    "keras_loss": float(loss(one_hot, logits)),
                }
            )
    OUT.write_text(json.dumps({"keras": keras.__version__, "backend": keras.backend.backend(), "cases": cases}) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases (Keras {keras.__version__}, {keras.backend.backend()} backend)")


if __name__ == "__main__":
    main()
