"""One augmented epoch over the 60,000 MNIST training images: cnnlab vs Keras' ImageDataGenerator.

With the lesson's settings (rotation 30, shifts 0.1, shear 0.2, zoom 0.2, fill 'nearest'), measured back to
back on this machine:
  1. transform only: cnnlab's batched ``Augment`` (batch 128) vs ``ImageDataGenerator.flow(batch_size=32)``;
  2. transform + LeNet-5 training: one epoch of ``cnnlab train lenet5 --augment`` vs the same epoch without
     augmentation (goal: at most 1.3x), and Keras' ``model.fit(aug.flow(x, y, batch_size=32))``.
Keras runs with TensorFlow in a virtual environment of this benchmark's own (benchmarks/.keras-venv, made on
first use with pip); if it cannot be installed, a scipy loop that mirrors Keras' per-image code stands in.
Writes benchmarks/results/augment_mnist.{json,png}.

    python benchmarks/augment_mnist.py [--data-dir DIR] [--keras-python PATH] [--no-keras]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab import create_model, fit
from cnnlab.augment import LESSON, Augment
from cnnlab.data import load_idx_dataset
from cnnlab.run import resolve_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# The lesson's LeNet-5 in Keras, for the snippets that run Keras in its own environment.
KERAS_LENET = """
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(6, 5, padding="same", activation="tanh"), keras.layers.AveragePooling2D(2),
    keras.layers.Conv2D(16, 5, activation="tanh"), keras.layers.AveragePooling2D(2), keras.layers.Flatten(),
    keras.layers.Dense(120, activation="tanh"), keras.layers.Dense(84, activation="tanh"),
    keras.layers.Dense(10, activation="softmax")])
"""

KERAS_SNIPPET = (
    r"""
import json, sys, time, gzip, numpy as np
from tensorflow import keras
from keras.src.legacy.preprocessing.image import ImageDataGenerator
settings = json.loads(sys.argv[2])
raw = gzip.decompress(open(sys.argv[1] + "/train-images-idx3-ubyte.gz", "rb").read())
x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28, 1).astype("float32")
y = np.frombuffer(gzip.decompress(open(sys.argv[1] + "/train-labels-idx1-ubyte.gz", "rb").read()), np.uint8, offset=8)
aug = ImageDataGenerator(**settings)
flow = aug.flow(x, y, batch_size=32, shuffle=True, seed=0)
start = time.perf_counter()
for i in range(len(flow)):
    flow[i]
transform = time.perf_counter() - start
"""
    + KERAS_LENET
    + r"""model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(aug.flow(x / 255.0, y, batch_size=32, seed=0), epochs=1, verbose=0)
train = time.perf_counter() - start
print(json.dumps({"transform_seconds": transform, "train_epoch_seconds": train, "keras": keras.__version__}))
"""
)


def venv_python(venv: Path, *installs: list[str], what: str) -> str | None:
    """The Python of a venv beside the benchmarks, made once: each of ``installs`` is one pip install (in
    order, so that torch comes from its own line first). None, with a message, when it cannot be made."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {what} (once)...", flush=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode == 0 and all(
            subprocess.run([*pip, *packages]).returncode == 0 for packages in installs
        )
        if not made:
            print(f"could not install {what}")
            return None
    return str(python)


def keras_python(args) -> str | None:
    if args.no_keras:
        return None
    if args.keras_python:
        return args.keras_python
    python = venv_python(HERE / ".keras-venv", ["tensorflow-cpu", "scipy", "pillow"], what="TensorFlow")
    if python is None:
        print("using the scipy loop that mirrors Keras instead")
    return python


def keras_run(python: str, mnist_dir: Path) -> dict | None:
    done = subprocess.run(
        [python, "-c", KERAS_SNIPPET, str(mnist_dir), json.dumps(LESSON)], capture_output=True, text=True
    )
    if done.returncode != 0:
        print("Keras run failed:", done.stderr.strip().splitlines()[-1:])
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def scipy_loop(images: np.ndarray) -> float:
    """Keras' per-image path (parameters, matrix, scipy.ndimage.affine_transform), on every training image."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from keras_reference import keras_affine

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for image in images:
        keras_affine(
            image[..., None].astype(np.float32),
            theta=rng.uniform(-30, 30),
            tx=rng.uniform(-0.1, 0.1) * 28,
            ty=rng.uniform(-0.1, 0.1) * 28,
            shear=rng.uniform(-0.2, 0.2),
            zx=rng.uniform(0.8, 1.2),
            zy=rng.uniform(0.8, 1.2),
            fill_mode="nearest",
        )
    return time.perf_counter() - start


def cnnlab_transform(images: torch.Tensor, batch_size=128, repeats=3) -> float:
    """Median seconds of ``repeats`` passes after one warm-up batch (a pass takes ~0.4 s: one alone is too noisy)."""
    aug = Augment.lesson()
    g = torch.Generator().manual_seed(0)
    aug(images[:batch_size].float(), generator=g)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            aug(images[i : i + batch_size].float(), generator=g)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def cnnlab_epoch(train, test, augment: bool) -> float:
    cfg = resolve_config("lenet5", {"epochs": 1, "progress": False, "checkpoint_every": 0})
    torch.manual_seed(cfg.seed)
    history = fit(
        create_model("lenet5"), train, test.subset(range(1000)), cfg, augment=Augment.lesson() if augment else None
    )
    return history["seconds"][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--keras-python", help="a Python with TensorFlow/Keras (default: benchmarks/.keras-venv)")
    parser.add_argument("--no-keras", action="store_true", help="use the scipy loop that mirrors Keras")
    args = parser.parse_args()
    train = load_idx_dataset("mnist", "train", args.data_dir)
    test = load_idx_dataset("mnist", "test", args.data_dir)
    result = {"images": len(train), "settings": LESSON, "torch": torch.__version__, "threads": torch.get_num_threads()}

    python = keras_python(args)
    keras = keras_run(python, Path(train.source)) if python else None
    if keras:
        result["keras"] = keras
        print(
            f"Keras {keras['keras']} ImageDataGenerator, transform only: {keras['transform_seconds']:.1f} s; "
            f"LeNet-5 epoch with it: {keras['train_epoch_seconds']:.1f} s",
            flush=True,
        )
    else:
        result["scipy_loop_seconds"] = scipy_loop(train.images[:, 0].numpy())
        print(f"scipy loop mirroring Keras, transform only: {result['scipy_loop_seconds']:.1f} s", flush=True)

    result["cnnlab_transform_seconds"] = cnnlab_transform(train.images)
    print(f"cnnlab Augment, transform only: {result['cnnlab_transform_seconds']:.2f} s", flush=True)
    result["cnnlab_plain_epoch_seconds"] = cnnlab_epoch(train, test, augment=False)
    result["cnnlab_augmented_epoch_seconds"] = cnnlab_epoch(train, test, augment=True)
    reference = keras["transform_seconds"] if keras else result["scipy_loop_seconds"]
    result["transform_speedup"] = reference / result["cnnlab_transform_seconds"]
    result["augmented_epoch_ratio"] = result["cnnlab_augmented_epoch_seconds"] / result["cnnlab_plain_epoch_seconds"]
    print(
        f"LeNet-5 epoch: plain {result['cnnlab_plain_epoch_seconds']:.1f} s, augmented "
        f"{result['cnnlab_augmented_epoch_seconds']:.1f} s ({result['augmented_epoch_ratio']:.2f}x)"
    )
    print(f"transform speed-up over {'Keras' if keras else 'the scipy loop'}: {result['transform_speedup']:.1f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "augment_mnist.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "augment_mnist.png")
    print(f"wrote {RESULTS / 'augment_mnist.json'} and .png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = "Keras ImageDataGenerator" if "keras" in result else "scipy loop (Keras' per-image code)"
    ref_transform = result["keras"]["transform_seconds"] if "keras" in result else result["scipy_loop_seconds"]
    bars = [
        (f"{reference}\ntransform only", ref_transform),
        ("cnnlab Augment\ntransform only", result["cnnlab_transform_seconds"]),
        ("cnnlab LeNet-5 epoch\nwithout augmentation", result["cnnlab_plain_epoch_seconds"]),
        ("cnnlab LeNet-5 epoch\nwith augmentation", result["cnnlab_augmented_epoch_seconds"]),
    ]
    if "keras" in result:
        bars.append(("Keras LeNet-5 epoch\nwith ImageDataGenerator", result["keras"]["train_epoch_seconds"]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.barh(
        [b[0] for b in bars],
        [b[1] for b in bars],
        color=["tab:gray", "tab:blue", "tab:green", "tab:green", "tab:gray"][: len(bars)],
    )
    for i, (_, seconds) in enumerate(bars):
        ax.text(seconds, i, f" {seconds:.1f} s", va="center")
    ax.set_xlabel("seconds for one pass over the 60,000 MNIST training images")
    ax.set_title(
        f"Lesson augmentation: transforms {result['transform_speedup']:.0f}x faster; augmented epoch "
        f"{result['augmented_epoch_ratio']:.2f}x a plain one"
    )
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
