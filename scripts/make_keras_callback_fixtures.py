"""Write tests/fixtures/keras_callbacks.json: the signatures of Keras' callbacks, defaults and order included,
and what Keras' fit does with callbacks on a tiny problem (the learning rates ReduceLROnPlateau and
LearningRateScheduler set, the hooks it calls and the logs they get), the oracle of cnnlab's callbacks of the
same names (tests/test_callbacks.py reads it without Keras).

Read from Keras itself (``inspect.signature`` of the installed classes, ``fit`` run), not retyped from its
source. The backend does not matter here; the torch backend needs no extra install beside cnnlab's:

    python3 -m venv /tmp/kerasenv
    /tmp/kerasenv/bin/pip install keras==3.15.1 torch==2.13.0 numpy scipy
    KERAS_BACKEND=torch /tmp/kerasenv/bin/python scripts/make_keras_callback_fixtures.py
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
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


def step_decay(epoch, initial=0.01):
    return initial * 0.5**epoch


def fits(keras) -> dict:
    """Keras' fit, 3 classes of 4 random features, batches of 8 out of 20 rows (a partial last one), with the
    callbacks of each case."""
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)).astype("float32"), rng.integers(0, 3, 20)

    def run(callbacks, epochs, validation=False, lr=0.1):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.SGD(lr), loss=loss, metrics=["accuracy"])
        return model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=callbacks,
                         validation_data=(x, y) if validation else None).history  # fmt: skip

    class Hooks(keras.callbacks.Callback):
        """The hooks of one epoch in order, each with the keys of its logs; the last train batch's logs."""

        def __init__(self):
            super().__init__()
            self.calls, self.batch_logs, self.epoch_logs = [], None, None

        def __getattribute__(self, name):
            hook = super().__getattribute__(name)
            if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):

                def record(*args, **kwargs):
                    logs = kwargs.get("logs", args[-1] if args and isinstance(args[-1], dict) else None) or {}
                    self.calls.append([name, sorted(logs)])
                    if name == "on_train_batch_end":
                        self.batch_logs = {k: float(v) for k, v in logs.items()}
                    if name == "on_epoch_end":
                        self.epoch_logs = {k: float(v) for k, v in logs.items() if not k.startswith("val_")}
                    return hook(*args, **kwargs)

                return record
            return hook

    reduce = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.1, patience=0, min_delta=10.0, min_lr=0.001, cooldown=1, verbose=1
    )
    scheduler = keras.callbacks.LearningRateScheduler(functools.partial(step_decay, initial=0.02))
    hooks, said = Hooks(), io.StringIO()
    run([hooks], 1, validation=True)
    with contextlib.redirect_stdout(said):
        reduced = run([reduce], 6)["learning_rate"]
    return {
        "reduce_lr_min_lr_cooldown": {
            "settings": "lr 0.1, monitor loss, factor 0.1, patience 0, min_delta 10, min_lr 0.001, cooldown 1",
            "learning_rate": [float(v) for v in reduced],  # of each epoch's steps
            "messages": said.getvalue().count("ReduceLROnPlateau reducing learning rate"),
        },
        "scheduler_partial_with_a_default": {
            "settings": "functools.partial(step_decay, initial=0.02), step_decay(epoch, initial=0.01)",
            "learning_rate": [float(v) for v in run([scheduler], 3)["learning_rate"]],
        },
        "hooks_of_an_epoch_with_validation": {
            "calls": [c for c in hooks.calls if c[0] not in ("on_train_begin", "on_train_end")],
            "last_batch_logs": hooks.batch_logs,
            "epoch_logs": hooks.epoch_logs,
        },
    }


def main() -> None:
    import keras

    signatures = {}
    for name in CALLBACKS:
        params = inspect.signature(getattr(keras.callbacks, name)).parameters.values()
        signatures[name] = [describe(p) for p in params]
    found = {"keras": keras.__version__, "signatures": signatures, "fits": fits(keras)}
    OUT.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {OUT}: {len(signatures)} callbacks (Keras {keras.__version__})")


if __name__ == "__main__":
    main()
