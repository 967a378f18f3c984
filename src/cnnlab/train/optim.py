"""What a step applies besides the gradient of the loss: the optimizer, the learning rate of each step, and
Keras-style L2 penalties."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

# Keras-style L2 (``kernel_regularizer=l2(c)``: c * sum(w^2) added to the loss) on a model that lists its
# penalties (``l2_groups``: parameters by coefficient) reaches the weights as its gradient, 2c * w, with every
# optimizer, without autograd over the weights (a quarter of each CPU step for AlexNet-BN's 58M weights):
# - Adam, SGD: as their coupled ``weight_decay=2c`` per group, which adds exactly 2c * w to the gradient
#   inside the (fused) optimizer kernel: free.
# - AdamW: its ``weight_decay`` is decoupled (a different update), so ``add_l2_gradient`` adds 2c * w to the
#   gradients before the step: one in-place add per regularised kernel (8 in AlexNet-BN), the same gradient
#   as the penalty in the loss, and ``--weight-decay`` keeps AdamW's decoupled meaning beside it.


def l2_in_optimizer(model, cfg: TrainConfig) -> bool:
    """Whether the model's Keras-style L2 penalties go into the optimizer as coupled weight decay (Adam, SGD)."""
    return hasattr(model, "l2_groups") and cfg.optimizer in ("adam", "sgd")


def l2_gradient_groups(model, cfg: TrainConfig) -> list[tuple[float, list[torch.Tensor]]]:
    """The (coefficient, parameters) whose L2 gradient ``fit`` adds itself before each step (AdamW)."""
    if not hasattr(model, "l2_groups") or l2_in_optimizer(model, cfg):
        return []
    return [(c, ps) for c, ps in model.l2_groups() if c]


@torch.no_grad()
def add_l2_gradient(groups: list[tuple[float, list[torch.Tensor]]]) -> None:
    """grad += 2c * w: the gradient of c * sum(w^2), Keras' l2(c)."""
    for c, params in groups:
        for p in params:
            if p.grad is not None:
                p.grad.add_(p, alpha=2 * c)


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``. A model's Keras-style L2 penalties reach Adam and SGD as coupled weight decay 2c
    per parameter group, and AdamW through ``add_l2_gradient`` (the module's L2 note)."""
    if l2_in_optimizer(model, cfg):
        params = [{"params": ps, "weight_decay": 2 * c + cfg.weight_decay} for c, ps in model.l2_groups()]
    else:
        params = list(model.parameters())
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg.optimizer]
    settings = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        settings.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    try:  # fused kernels update all parameters in one pass (CPU since PyTorch 2.4)
        return kind(params, **settings, fused=True)
    except (RuntimeError, TypeError):
        return kind(params, **settings)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up, then the schedule (stateless, so resume is exact)."""
    warm = int(cfg.warmup * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    low = cfg.final_lr
    if cfg.schedule == "cosine":
        factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    elif cfg.schedule == "linear":
        factor = 1 - (1 - low) * progress
    elif cfg.schedule == "step":  # x0.1 at half and three quarters of training
        factor = 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    else:
        factor = 1.0
    return cfg.lr * factor
