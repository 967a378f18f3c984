"""Write tests/fixtures/keras_conv_same.json: Keras' ``Conv2D(padding="same")`` outputs, the oracle of the
padding that ``from_pattern``'s CONV builds (tests/test_pattern.py reads it without Keras).

"same" with an even kernel cannot pad both sides alike; Keras (as TensorFlow) puts the extra row and column
after the image, and with a stride the output is ceil(side / stride) however the kernel fits. The cases: kernels
2 to 5 on 7x7 and 8x8 inputs (odd and even sides), strides 1 to 3, two input channels, three filters, fixed random
weights and inputs, no bias. Regenerate with the environment of
scripts/make_keras_fixtures.py:

    /tmp/kerasenv/bin/python scripts/make_keras_conv_fixtures.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_conv_same.json"


def main() -> None:
    import keras

    rng = np.random.default_rng(0)
    cases = []
    for side in (7, 8):
        for kernel, stride in ((k, s) for s in (1, 2, 3) for k in (2, 3, 4, 5)):
            x = rng.normal(size=(1, side, side, 2)).astype(np.float32)
            weights = rng.normal(size=(kernel, kernel, 2, 3)).astype(np.float32)  # Keras' (H, W, in, out)
            conv = keras.layers.Conv2D(3, kernel, strides=stride, padding="same", use_bias=False)
            conv.build(x.shape)
            conv.set_weights([weights])
            y = keras.ops.convert_to_numpy(conv(x))
            case = {"side": side, "kernel": kernel, "stride": stride, "x": x.tolist(), "weights": weights.tolist()}
            cases.append({**case, "y": y.tolist()})
    OUT.write_text(json.dumps({"keras": keras.__version__, "backend": keras.backend.backend(), "cases": cases}) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases, Keras {keras.__version__} on {keras.backend.backend()})")


if __name__ == "__main__":
    main()
