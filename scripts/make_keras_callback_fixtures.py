"""Write tests/fixtures/keras_callbacks.json: the signatures of Keras' callbacks, defaults and order included,
the oracle of cnnlab's callbacks of the same names (tests/test_callbacks.py reads it without Keras).

Read from Keras itself (``inspect.signature`` of the installed classes), not retyped from its source. The
backend does not matter for a signature; the torch backend needs no extra install beside cnnlab's:

    python3 -m venv /tmp/kerasenv
    /tmp/kerasenv/bin/pip install keras==3.15.1 torch==2.13.0 numpy scipy
    KERAS_BACKEND=torch /tmp/kerasenv/bin/python scripts/make_keras_callback_fixtures.py
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_callbacks.json"
CALLBACKS = (
    "EarlyStopping",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "LearningRateScheduler",
    "TerminateOnNaN",
    "CSVLogger",
)


def describe(p: inspect.Parameter) -> dict:
    """A parameter as JSON: its name and kind, and its default (``"required": true`` where it has none)."""
    about = {"name": p.name, "kind": p.kind.name}
    return {**about, "required": True} if p.default is inspect.Parameter.empty else {**about, "default": p.default}


def main() -> None:
    import keras

    signatures = {}
    for name in CALLBACKS:
        params = inspect.signature(getattr(keras.callbacks, name)).parameters.values()
        signatures[name] = [describe(p) for p in params]
    OUT.write_text(json.dumps({"keras": keras.__version__, "signatures": signatures}, indent=1) + "\n")
    print(f"wrote {OUT}: {len(signatures)} callbacks (Keras {keras.__version__})")


if __name__ == "__main__":
    main()
