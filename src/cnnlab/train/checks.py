"""What the data, the processes and the model make impossible, found before a run's first step or at it.

``cnnlab train`` calls ``check_fits_source`` and ``check_model_fits_source`` before it claims a run directory,
so that a refused run leaves no folder behind; ``fit`` checks the same at its first step (``checked_forward``).
"""

from __future__ import annotations

import torch

from ..data.source import DataSource
from ..errors import UsageError
from ..summary import trace
from .config import TrainConfig
from .runtime import Runtime, check_processes


def check_fits_source(cfg: TrainConfig, source: DataSource, rt: Runtime, model: torch.nn.Module) -> None:
    """What the data, the processes and the model's layers make impossible, refused before any work."""
    n_train, batch, world = source.size("train"), cfg.batch_size, rt.world_size
    if batch > n_train:
        raise UsageError(f"batch size {batch} is larger than the training set ({n_train} images)")
    check_processes(cfg, world, rt.device)
    last = n_train % batch
    split = f"{n_train:,} training images are {n_train // batch} x {batch} + {last}"
    if 0 < last < world:  # a process would get no row: the step count would depend on the number of processes
        raise UsageError(
            f"--batch-size {batch}: the epoch's last batch of {last} image(s) cannot give each of {world} "
            f"processes one ({split}); choose one that leaves 0 or at least {world}"
        )
    # PyTorch's BatchNorm1d refuses one row in training (Keras' normalises it to its beta): a process with one
    # row, in every step or in the epoch's last, would fail at that step.
    if any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) and 1 in (batch // world, last // world):
        where = "every batch" if batch // world == 1 else f"the epoch's last batch ({split})"
        raise UsageError(
            f"--batch-size {batch} leaves one image per process in {where}; the model's BatchNorm1d cannot train "
            "on one image (PyTorch refuses it): choose another"
        )


def check_model_options(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """The model was made with the options the settings name (a preset's dropout, say): ``fit`` trains the
    model it is given, so settings that describe another one would be recorded without having been used."""
    made_with = getattr(model, "cnnlab_options", None)
    if made_with is None or not cfg.model_options:
        return
    differ = {k: v for k, v in cfg.model_options.items() if made_with.get(k) != v}
    if differ:
        made = ", ".join(f"{k}={made_with.get(k)!r}" for k in differ)
        raise UsageError(
            f"the settings' model_options {differ} differ from the model's ({made}): make it with "
            f"cnnlab.create_model({model.cnnlab_name!r}, **config.model_options)"
        )


def check_model_fits_source(model: torch.nn.Module, source: DataSource) -> None:
    """The model takes the data's images (two zeros through it: a size it cannot take is refused naming it) and
    answers with logits (N, K), K at least the data's classes. ``fit`` checks the same at its first step
    instead (``checked_forward``), since a forward pass on zeros would reach the caller's own hooks."""
    outputs = []
    with model.register_forward_hook(lambda module, args, out: outputs.append(out)):  # removed after the block
        trace(model, source.image_size)
    check_logits(model, outputs[0], source)


def check_logits(model: torch.nn.Module, out, source: DataSource) -> None:
    """``out``, the model's answer to a batch, is logits (N, K) with K at least the ``source``'s classes."""
    name, classes = getattr(model, "cnnlab_name", type(model).__name__), len(source.classes)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"{name} answers {shape} per image; fit trains a classifier's logits, one per class")
    outputs = out.shape[1]
    trained = int(source.labels("train").max()) + 1  # classes count over both splits: a stray validation label
    stray = int(source.labels("val").max()) if trained <= outputs < classes and source.size("val") else -1
    if stray >= outputs:
        raise UsageError(
            f"label {stray} is only in the validation data (training labels: 0-{trained - 1}), past {name}'s "
            f"{outputs} outputs: correct it, or make it with num_classes={classes}"
        )
    if outputs < classes:
        raise UsageError(
            f"the data has {classes} classes (labels 0-{classes - 1}) but {name} has {outputs} outputs: "
            f"make it with num_classes={classes}"
        )
    # Keras' habit, a final softmax, would be applied twice: a pattern ending in SOFTMAX trained to a loss of
    # 1.84 and 64% where the same net without it reached 0.79 and 75% (3 epochs).
    last = next((m for m in reversed(list(model.modules())) if not list(m.children())), None)
    if isinstance(last, (torch.nn.Softmax, torch.nn.LogSoftmax)):
        raise UsageError(
            f"{name} ends in a {type(last).__name__}: cnnlab's loss and predict take logits and apply the softmax "
            "themselves (Keras' from_logits=True); leave it out"
        )


def checked_forward(net, model: torch.nn.Module, inputs: torch.Tensor, source: DataSource) -> torch.Tensor:
    """The first step's forward pass, checked as ``check_model_fits_source`` checks (instead of torch's message
    from deep inside, or a label past the logits at the loss). A failure is called a size problem only if the
    plain model fails on zeros of that size too (``trace``): the step also runs in train mode, under autocast,
    through DDP or torch.compile, where a batch of one row in BatchNorm, a compiler or a device error fail for
    other reasons; those keep their own traceback."""
    try:
        logits = net(inputs)
    except RuntimeError:
        trace(model, tuple(inputs.shape[1:]))  # raises the UsageError naming the size, if it is one
        raise
    check_logits(model, logits, source)
    return logits
