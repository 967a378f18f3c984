"""Training configuration: plain values, overridable from the command line or a JSON file (nanoGPT-style).

Precedence, lowest first: these defaults, the model's registry defaults (``train_defaults``), a
``--config`` JSON file, then command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    model: str = "lenet5"
    model_options: dict = field(default_factory=dict)
    dataset: str = "mnist"  # mnist | fashion-mnist, or "folder" with ``data``
    data_dir: str | None = None  # where the IDX datasets' files are
    data: str | None = None  # a folder of images (Kaggle's train/ or class subfolders); sets dataset="folder"
    val_dir: str | None = None  # a folder of validation images (else a stratified split of ``data``)
    image_size: int = 256  # image folders: cached at this size (shorter side, centre crop)
    crop: int = 227  # image folders: random crops of this size for training, the centre crop for validation
    cache_dir: str | None = None  # image folders: where the decoded cache goes (default ~/.cache/cnnlab/images)
    epochs: int = 6
    batch_size: int = 128
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 3e-3
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0  # decoupled (adamw) or coupled (adam/sgd), as PyTorch's optimizers define it
    schedule: str = "cosine"  # cosine | linear | step | constant, each after a linear warm-up
    warmup: float = 0.15  # fraction of all steps
    ema: float = 0.0  # Keras' ema_momentum: validate and keep a moving average of the weights (0: off)
    final_lr: float = 0.0  # fraction of lr reached at the end (cosine, linear)
    seed: int = 42
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    channels_last: bool = True
    compile: bool = False  # torch.compile the model: pays off on GPUs; on CPUs compiling costs more than it saves
    threads: int = 0  # 0: PyTorch's choice
    deterministic: bool = False  # GPUs: deterministic kernels, so a seed repeats and a resume is exact (CPUs are)
    sync_bn: bool = False  # several GPU processes: SyncBatchNorm (else rank 0's statistics are shared)
    timeout: float = 300.0  # seconds a process waits for the others (rendezvous, collectives) before giving up
    val_split: float = 0.0  # 0: validate on the test set, as the lesson does
    eval_batch_size: int = 500
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0: none)
    checkpoint_steps: int = 0  # also every N steps inside an epoch (0: never)
    early_stopping: int = 0  # patience in epochs on val_loss (0: off)
    nonfinite: str = "stop"  # stop | skip: what a NaN/inf loss does
    augment: dict | None = None  # augmentation settings (see cnnlab.augment), None: none
    out_dir: str = "runs"
    run_name: str = ""
    dry_run: bool = False  # two batches of one epoch, to check that everything runs
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**d)

    def updated(self, **overrides) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **overrides})

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (
                self.optimizer in ("adam", "adamw", "sgd"),
                f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}",
            ),
            (
                self.schedule in ("cosine", "linear", "step", "constant"),
                f"schedule must be cosine, linear, step or constant, got {self.schedule!r}",
            ),
            (0 <= self.warmup < 1, f"warmup is a fraction of the steps in [0, 1), got {self.warmup}"),
            (0 <= self.ema < 1, f"ema is a momentum in [0, 1) (0: off), got {self.ema}"),
            (0 <= self.val_split < 1, f"val split must be in [0, 1), got {self.val_split}"),
            (
                self.precision in ("fp32", "bf16", "fp16"),
                f"precision must be fp32, bf16 or fp16, got {self.precision!r}",
            ),
            (self.nonfinite in ("stop", "skip"), f"nonfinite must be stop or skip, got {self.nonfinite!r}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 < self.crop <= self.image_size, f"crop must be in 1..image size ({self.image_size}), got {self.crop}"),
            (self.checkpoint_every >= 0 and self.checkpoint_steps >= 0, "checkpoint intervals must be >= 0"),
        ]
        if self.run_name and (self.run_name in (".", "..") or "/" in self.run_name or "\\" in self.run_name):
            raise ValueError(f"run name must be a plain folder name, got {self.run_name!r}")
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds one JSON object")
    return data
