"""Run by the distributed tests, once per process under torchrun (or alone as one process): trains LeNet-5 with
``cnnlab.fit`` on a small slice of MNIST and records, per global step, which images this process saw and its
loss, then the final weights. ``python distributed_worker.py OUT_DIR MODE [RUN_DIR]``; MODE is

    full     train all epochs
    stop     stop with a checkpoint after the first epoch (as a kill would leave it)
    resume   resume RUN_DIR from its newest checkpoint and finish
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import shared_data_dir, synthetic_digits  # noqa: E402

from cnnlab import Callback, TrainConfig, create_model, fit  # noqa: E402
from cnnlab.checkpoint import save_weights  # noqa: E402
from cnnlab.data import ArrayDataset, ArraySource, load_idx_dataset  # noqa: E402
from cnnlab.train.runtime import shutdown  # noqa: E402

EPOCHS, BATCH = 2, 32


def mnist_slice() -> tuple[ArrayDataset, ArrayDataset]:
    """640 training and 200 test images of real MNIST (synthetic digits where it is absent)."""
    found = shared_data_dir()
    if found:
        train = load_idx_dataset("mnist", "train", found, download_missing=False).subset(range(640))
        test = load_idx_dataset("mnist", "test", found, download_missing=False).subset(range(200))
        return train, test

    def make(n, seed):
        images, labels = synthetic_digits(n, seed)
        return ArrayDataset(
            torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64")), tuple("0123456789")
        )

    return make(640, 1), make(200, 2)


class RecordingSource(ArraySource):
    """An ArraySource whose training loader notes a checksum of every image it hands out, per step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: dict[int, list[int]] = {}

    def loader(self, split, batch_size, device, *, train=False, **kwargs):
        inner = super().loader(split, batch_size, device, train=train, **kwargs)
        if not train:
            return inner
        source = self

        class Recording:
            def __len__(self):
                return len(inner)

            def global_batch_len(self, step):
                return inner.global_batch_len(step)

            def epoch(self, epoch, start=0):
                for step, (images, labels) in enumerate(inner.epoch(epoch, start), start=start):
                    key = epoch * len(inner) + step
                    weights = torch.arange(1, images[0].numel() + 1, dtype=torch.int64)
                    source.seen[key] = (images.flatten(1).long() @ weights).tolist()
                    yield images, labels

        return Recording()


class LossPerStep(Callback):
    def __init__(self, steps_per_epoch):
        self.steps_per_epoch, self.losses, self.epoch = steps_per_epoch, {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        self.losses[self.epoch * self.steps_per_epoch + batch] = logs["loss"]


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    run_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else out / "run"
    rank = int(os.environ.get("RANK", 0))
    train, test = mnist_slice()
    source = RecordingSource(train, test)
    torch.manual_seed(0)
    model = create_model("lenet5")
    cfg = TrainConfig(
        epochs=EPOCHS if mode != "stop" else 1,
        batch_size=BATCH,
        lr=2e-3,
        schedule="constant",
        warmup=0.0,
        ema=0.0,
        channels_last=False,
        threads=1,
        progress=False,
        eval_batch_size=64,
    )
    losses = LossPerStep(steps_per_epoch=-(-len(train) // BATCH))
    fit(model, source, None, cfg, [losses], run_dir=run_dir, resume=mode == "resume")
    record = {"seen": source.seen, "losses": losses.losses, "world": int(os.environ.get("WORLD_SIZE", 1))}
    (out / f"record-{mode}-rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        save_weights(out / f"weights-{mode}.safetensors", model)
    shutdown()  # leave the process group before exiting, as the command line does


if __name__ == "__main__":
    main()
