"""The training loop: one function, read top to bottom.

``fit`` trains a model on a data source (see data/source.py) with the settings of a ``TrainConfig``: it
builds the optimizer, walks the epochs, evaluates after each one, calls Keras-style callbacks, writes
resumable checkpoints, and returns a Keras-style ``History``. Everything that depends on where it runs
(device, processes, printing, precision) is asked of the ``Runtime``; with N processes each computes its
rows of every global batch and DistributedDataParallel averages the gradients, so the steps are those of
one process.
"""

from __future__ import annotations

import math
import os
import signal
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..checkpoint import list_checkpoints, resume_point, save_checkpoint
from ..data.arrays import ArraySource
from ..data.datasets import ArrayDataset
from ..data.loader import Preprocess, epoch_seed
from ..data.source import DataSource
from ..errors import TrainingError, TrainingInterrupted, UsageError, WrongType
from ..evaluation.metrics import predict_logits
from .callbacks import CallbackList, EpochTimer
from .config import TrainConfig
from .ema import WeightAverage
from .recipes import config_for
from .runtime import Runtime


class History:
    """Per-epoch metrics, as Keras' ``History``: ``history.history["val_accuracy"][-1]``."""

    def __init__(self, history: dict | None = None):
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}

    @property
    def epoch(self) -> list[int]:
        return list(range(len(next(iter(self.history.values()), []))))

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]


class CheckpointWriteError(TrainingError):
    """A checkpoint could not be written (a full disk, say); the message says what is still intact."""


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite; the message names the epoch and step."""


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
    """The optimizer of ``cfg``. A model with Keras-style L2 penalties (``l2_groups``) gets them as coupled
    weight decay 2c per parameter group (Adam, SGD): the same gradient as adding c * sum(w^2) to the loss
    (AdamW: see ``add_l2_gradient``)."""
    if l2_in_optimizer(model, cfg):
        params = [{"params": ps, "weight_decay": 2 * c + cfg.weight_decay} for c, ps in model.l2_groups()]
    else:
        params = list(model.parameters())
    return _optimizer(params, cfg)


def _optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    kinds = {
        "adam": lambda **kw: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw),
        "adamw": lambda **kw: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw),
        "sgd": lambda **kw: torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **kw
        ),
    }
    params = list(params)
    try:  # fused kernels update all parameters in one pass (CPU since PyTorch 2.4)
        return kinds[cfg.optimizer](fused=True)
    except (RuntimeError, TypeError):
        return kinds[cfg.optimizer]()


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


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Keras' categorical cross-entropy from logits, with its ``label_smoothing``: the targets are
    (1 - s) * one_hot + s / classes. PyTorch's ``label_smoothing`` is the same rule (tests/test_losses.py
    checks the values against Keras' own output)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate_loss_accuracy(
    model, source: DataSource, split, preprocess, runtime: Runtime, batch_size, max_batches=0, label_smoothing=0.0
):
    """Mean loss and accuracy over the whole split (every process's shard, gathered). As in Keras, the loss is
    the training loss, label smoothing included."""
    logits = predict_logits(model, source, split, preprocess, runtime, batch_size, max_batches=max_batches)
    labels = source.labels(split)[: len(logits)]
    loss = classification_loss(logits, labels, label_smoothing)
    return loss.item(), (logits.argmax(1) == labels).float().mean().item()


def as_source(data, validation_data=None) -> DataSource:
    """What ``fit`` trains on: a data source, or Keras' forms: ``(x, y)`` / an ``ArrayDataset`` with
    ``validation_data`` the same way."""
    if isinstance(data, DataSource):
        if validation_data is not None:
            raise UsageError("a data source brings its own validation split; do not pass validation_data too")
        return data
    if isinstance(data, tuple):
        return ArraySource.from_arrays(*data, validation_data=validation_data)
    if isinstance(data, ArrayDataset):
        if isinstance(validation_data, tuple):
            validation_data = ArraySource.from_arrays(*validation_data, classes=data.classes).splits["train"]
        return ArraySource(data, validation_data)
    raise WrongType(f"fit() takes a DataSource, an ArrayDataset or (x, y), got {type(data).__name__}")


class _NonFiniteWatch:
    """Finds the first non-finite loss without a host sync per step: the step and value stay on the
    device until ``check`` reads them, so the error names the step where it happened, not where it was seen."""

    def __init__(self, device, error):
        self.first_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.value = torch.zeros((), device=device)
        self.error = error

    def note(self, loss: torch.Tensor, global_step: int) -> None:
        new = self.first_step.lt(0) & ~torch.isfinite(loss.detach())
        self.first_step = torch.where(new, global_step, self.first_step)
        self.value = torch.where(new, loss.detach(), self.value)

    def check(self) -> None:
        if (step := int(self.first_step)) >= 0:
            raise self.error(self.value.item(), step)


def check_fits_source(cfg: TrainConfig, source: DataSource, rt: Runtime) -> None:
    """What the data and the processes make impossible, refused before any work (``cnnlab train`` calls it
    before it claims a run directory, so that a refused run leaves no folder behind)."""
    n_train = source.size("train")
    if cfg.batch_size > n_train:
        raise UsageError(f"batch size {cfg.batch_size} is larger than the training set ({n_train} images)")
    if cfg.batch_size % rt.world_size:
        raise UsageError(
            f"--batch-size {cfg.batch_size} is the global batch and must divide among {rt.world_size} processes"
        )
    if cfg.sync_bn and rt.distributed and rt.device.type == "cpu":
        raise UsageError(
            "--sync-bn needs GPUs (PyTorch's SyncBatchNorm is GPU-only); on CPUs rank 0's "
            "BatchNorm statistics are shared before each evaluation instead"
        )


def fit(
    model,
    data,
    validation_data=None,
    config: TrainConfig | None = None,
    callbacks=(),
    run_dir=None,
    resume: bool = False,
    augment=None,
    runtime: Runtime | None = None,
) -> History:
    """Train ``model`` on ``data``'s "train" split and validate on its "val" split after every epoch.

    ``data`` is a data source (data/source.py), or as in Keras ``(x, y)`` or an ``ArrayDataset`` with
    ``validation_data`` given the same way (or None).

    ``run_dir`` receives resumable checkpoints; with ``resume=True`` training continues from the newest
    complete one there, and ends with the same weights as a run that was never stopped.
    ``augment`` is a batch transform ``f(x, generator=g)`` applied to training batches (see cnnlab.augment).
    Without ``config`` a model made by ``create_model`` trains with its recipe, as ``cnnlab train NAME`` does
    (``config_for(model, epochs=2)`` changes one setting of it).
    """
    cfg = config or config_for(model)
    cfg.validate()
    rt = runtime or Runtime(cfg.device, cfg.precision, cfg.threads, cfg.timeout)
    source = as_source(data, validation_data)
    check_fits_source(cfg, source, rt)
    n_train = source.size("train")

    # --- model, data and optimizer -----------------------------------------------------------------
    if cfg.sync_bn and rt.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(rt.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    # The model carries the normalisation it was trained with: evaluate, predict and export read it there.
    norm = getattr(model, "cnnlab_input_norm", None) or source.input_norm()
    model.cnnlab_input_norm = norm
    train_pre = Preprocess(norm, rt.device, cfg.channels_last, augment)
    eval_pre = Preprocess(norm, rt.device, cfg.channels_last)
    limit = 2 if cfg.dry_run else 0
    train_loader = source.loader("train", cfg.batch_size, rt.device, train=True, seed=cfg.seed, shard=rt.shard)
    validate = source.size("val") > 0
    optimizer = make_optimizer(model, cfg)
    # Keras-style L2 reaches the gradient in the optimizer (Adam, SGD) or through add_l2_gradient (AdamW);
    # its value (regularization_loss) is only added to the logged losses, as Keras reports them.
    l2_gradient = l2_gradient_groups(model, cfg)
    regularization = getattr(model, "regularization_loss", None)
    # fp16 needs loss scaling against underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    steps_per_epoch = min(len(train_loader), limit) if limit else len(train_loader)
    epochs = 1 if cfg.dry_run else cfg.epochs
    total_steps = epochs * steps_per_epoch

    history = History()
    trainer = _Trainer(model, optimizer, history, rt, lambda step: lr_at(step, total_steps, cfg), cfg.lr)
    params = {"verbose": int(cfg.progress), "epochs": epochs, "steps": steps_per_epoch}  # Keras' Callback.params
    cbs = CallbackList([EpochTimer(), *callbacks], trainer, params)

    # --- resume ------------------------------------------------------------------------------------
    # Rank 0 reads the checkpoint (saying what it skipped) and hands it to the others: the run directory needs
    # to be on its machine only; DistributedDataParallel then starts every process from rank 0's weights.
    start_epoch, start_step, resumed_partial, callback_states = 0, 0, None, []
    found = resume_point(run_dir, resume, rt.print) if rt.is_main else None  # None for a new run
    found = rt.broadcast_object(found)
    if found:
        folder, model_state, state = found
        _same_data(folder, state.get("data"), {"train_images": n_train, "steps_per_epoch": steps_per_epoch})
        model.load_state_dict(model_state)
        optimizer.load_state_dict(state["optimizer"])
        _match_param_layout(optimizer)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        history = trainer.history = History(state["history"])
        start_epoch, start_step, resumed_partial = state["epoch"], state["step_in_epoch"], state.get("partial")
        if not rt.is_main:  # the metrics of the steps before the restart are summed over processes once
            resumed_partial = None
        callback_states = state.get("callbacks") or []  # loaded after on_train_begin, which resets callbacks
        if state.get("trainer"):
            trainer.load_state_dict(state["trainer"])
        rt.print(
            f"resuming from {folder} (epoch {start_epoch + 1}, step {start_step})"
            if start_epoch < epochs
            else f"{folder}: all {epochs} epochs are done; nothing left to train"
        )
    net = rt.wrap(model)
    if cfg.compile:  # compiled for the steps only; ``model`` (plain keys) is what is saved and evaluated
        net = torch.compile(net)
    eval_net = model if rt.distributed else net

    def checkpoint(epoch: int, step_in_epoch: int, sums=None) -> None:
        """Called by every process alike; rank 0 writes. Random draws are seeded per step (no RNG state)."""
        partial = rt.reduce(sums).tolist() if sums is not None else None
        if not (run_dir and rt.is_main):
            return
        state = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "ema": ema.state_dict() if ema is not None else None,
            "history": history.history,
            "partial": partial,
            "data": {"train_images": n_train, "steps_per_epoch": steps_per_epoch},
            "callbacks": cbs.state_dicts(),
            "trainer": trainer.state_dict(),
        }
        tag = f"step-{epoch * steps_per_epoch + step_in_epoch:09d}"
        try:
            save_checkpoint(run_dir, tag, model.state_dict(), state)
        except OSError as e:
            kept = list_checkpoints(run_dir)
            raise CheckpointWriteError(
                f"could not write checkpoint {tag} in {run_dir} ({e.strerror or e}); "
                + (f"the previous checkpoint {kept[-1].name} is intact" if kept else "no earlier checkpoint exists")
            ) from None

    # SIGINT/SIGTERM end the current step, then a checkpoint is written and the run stops cleanly.
    stop_signal: list[int] = []
    previous_handlers = {}
    if run_dir:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous_handlers[sig] = signal.signal(sig, lambda s, f: stop_signal.append(s))
            except ValueError:  # not the main thread
                pass

    def non_finite(value: float, global_step: int) -> NonFiniteLoss:
        epoch, step = divmod(global_step, steps_per_epoch)
        return NonFiniteLoss(
            f"loss is {value} at epoch {epoch + 1}, step {step + 1}; stopped "
            + (
                "(the last good checkpoint is kept; lower --lr or use --nonfinite skip)"
                if run_dir
                else "(lower --lr or use --nonfinite skip)"
            )
        )

    # A host sync per step is free on CPU, costly on a GPU. Processes must agree on a bad step, so they check
    # it together each step (one small all-reduce that also carries the stop signal).
    check_every_step = rt.device.type == "cpu" or rt.distributed
    watch = _NonFiniteWatch(rt.device, non_finite)
    # CPU runs repeat exactly anyway; on a GPU that needs deterministic kernels (slower), restored after fit.
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if ema is not None:
        rt.print(f"validating and keeping a moving average of the weights (ema {cfg.ema}; --ema 0 turns it off)")
    cbs.on_train_begin({})
    cbs.load_state_dicts(callback_states)
    try:
        for epoch in range(start_epoch, epochs):
            if trainer.stop_training:  # a callback stopped it (before a resume too: the checkpoint says so)
                break
            model.train()
            first = start_step if epoch == start_epoch else 0
            trainer.step = epoch * steps_per_epoch + first
            cbs.on_epoch_begin(epoch, {})
            sums = torch.zeros(3, device=rt.device, dtype=torch.float64)  # loss sum, correct, count
            if first and resumed_partial is not None:  # the metrics of the steps done before the restart
                sums += torch.tensor(resumed_partial, dtype=torch.float64, device=rt.device)
            bar = rt.progress(steps_per_epoch, f"Epoch {epoch + 1}/{epochs}", cfg.progress)
            bar.update(first)
            # The last clean_epochs see unaugmented images (no generator: Preprocess does not augment), so the
            # model ends on the distribution it is tested on; chosen by measurement (benchmarks/README.md).
            augmenting = augment is not None and epoch < cfg.epochs - cfg.clean_epochs  # a --dry-run augments
            aug_gen = torch.Generator(device=rt.device) if augmenting else None
            for step, (images, labels) in enumerate(train_loader.epoch(epoch, first), start=first):
                if step >= steps_per_epoch:  # --dry-run
                    break
                global_step = trainer.step = epoch * steps_per_epoch + step
                # Dropout's draws, seeded per (step, process): replayed exactly after a restart, any world size.
                torch.manual_seed(epoch_seed(cfg.seed, global_step, salt=3) + rt.rank)
                batch_len = train_loader.global_batch_len(step)
                lr = trainer.learning_rate  # the schedule's, unless a callback changed it
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if cbs.wants_batches:
                    cbs.on_train_batch_begin(step, {})
                if aug_gen is not None:  # seeded per step: any step can be replayed after a restart
                    aug_gen.manual_seed(epoch_seed(cfg.seed, global_step, salt=1))
                with rt.autocast():
                    logits = net(train_pre(images, aug_gen, batch_len, rt.shard.rows(batch_len)))
                    loss = classification_loss(logits, labels, cfg.label_smoothing)
                    # DDP averages the processes' gradients; an uneven last batch is weighted by its rows.
                    share = len(labels) * rt.world_size / batch_len
                    loss_to_step = loss * share if share != 1 else loss
                finite, stopping = None, bool(stop_signal)
                if check_every_step or cfg.nonfinite == "skip":  # one all-reduce a step carries both flags
                    bad, stopping = rt.any(not bool(torch.isfinite(loss)), stopping)
                    finite = not bad
                    if not finite and cfg.nonfinite == "stop":
                        raise non_finite(loss.item(), global_step)
                else:  # GPU: note the first bad step on the device (no sync) and read it every 50 steps
                    watch.note(loss, global_step)
                    if step % 50 == 49:
                        watch.check()
                optimizer.zero_grad(set_to_none=True)
                if finite is not False:
                    scaler.scale(loss_to_step).backward()
                    if l2_gradient:
                        scaler.unscale_(optimizer)  # fp16: the L2 gradient is added to true-scale gradients
                        add_l2_gradient(l2_gradient)
                    scaler.step(optimizer)
                    scaler.update()
                    if ema is not None:
                        ema.update()
                    sums[0] += loss.detach() * len(labels)
                    sums[1] += (logits.argmax(1) == labels).sum()
                    sums[2] += len(labels)
                if cbs.wants_batches:
                    cbs.on_train_batch_end(step, {"loss": loss.item(), "lr": lr})
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{sums[0].item() / max(sums[2].item(), 1):.4f}", lr=f"{lr:.2e}")
                done = step + 1
                if stopping:
                    bar.close()
                    checkpoint(epoch, done, sums)
                    raise TrainingInterrupted(
                        f"interrupted by {signal.Signals(stop_signal[0]).name if stop_signal else 'a signal'} "
                        f"at epoch {epoch + 1}, step {done}; "
                        f"checkpoint written. Resume with: cnnlab train --resume {run_dir}",
                        stop_signal[0] if stop_signal else signal.SIGTERM,
                    )
                if cfg.checkpoint_steps and done % cfg.checkpoint_steps == 0 and done < steps_per_epoch:
                    checkpoint(epoch, done, sums)
                if trainer.stop_training:  # Keras stops after the batch, then validates and ends the epoch
                    break
            bar.close()
            watch.check()  # before the epoch's metrics and checkpoint

            loss_sum, correct, count = rt.reduce(sums).tolist()
            logs = {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}
            # Keras reports losses with the L2 penalty in them; computed once, at the epoch's final weights.
            penalty = float(regularization()) if regularization is not None else 0.0
            logs["loss"] += penalty
            if rt.distributed and not cfg.sync_bn:
                rt.broadcast_buffers(model)
            # With an average of the weights, validation and the callbacks (saved weights) see the average.
            with ema.swapped_in() if ema is not None else nullcontext():
                if validate:
                    logs["val_loss"], logs["val_accuracy"] = evaluate_loss_accuracy(
                        eval_net, source, "val", eval_pre, rt, cfg.eval_batch_size, limit, cfg.label_smoothing
                    )
                    if regularization is not None:
                        logs["val_loss"] += float(regularization()) if ema is not None else penalty
                logs["lr"] = lr
                cbs.on_epoch_end(epoch, logs)
            history.append(logs)
            rt.print(
                f"Epoch {epoch + 1}/{epochs} - "
                + " - ".join(
                    f"{k}: {v:.1f}s" if k == "seconds" else f"{k}: {v:.3g}" if k == "lr" else f"{k}: {v:.4f}"
                    for k, v in logs.items()
                )
            )
            if cfg.checkpoint_every and (
                (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == epochs or trainer.stop_training
            ):
                checkpoint(epoch + 1, 0)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        torch.use_deterministic_algorithms(was_deterministic)
    if ema is not None:  # as Keras does at the end of fit: the model keeps the average
        ema.copy_to_model()
    if rt.distributed and not cfg.sync_bn:  # the model fit returns is the same on every process
        rt.broadcast_buffers(model)
    cbs.on_train_end({"history": history.history})
    return history


def _same_data(folder, saved: dict | None, now: dict) -> None:
    """A resume continues on the data the run trained on: a different count of images (another folder, the
    MNIST sample instead of the full set) would silently continue a different run."""
    if saved is not None and saved != now:
        from ..checkpoint import CheckpointError

        raise CheckpointError(
            f"{folder}: the run trained on {saved['train_images']:,} images ({saved['steps_per_epoch']} steps an "
            f"epoch); the data found now has {now['train_images']:,} ({now['steps_per_epoch']}). A resume needs "
            "the run's own data (--data-dir to say where it is)"
        )


def _match_param_layout(optimizer) -> None:
    """Give restored optimizer state the memory layout of its parameter.

    Saved tensors come back contiguous, while a channels-last parameter's moments were created
    channels-last; fused and foreach optimizer kernels walk parameter and state as flat memory, so a
    layout mismatch would silently pair the wrong elements.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(value)


class _Trainer:
    """What callbacks see as ``self.trainer`` beside Keras' ``self.model``: the optimizer, the history, the
    runtime, whether to stop, and the learning rate rule (see cnnlab.train.callbacks): the rate of a step is
    ``(lr_override if set else schedule(step)) * lr_scale``. Its state is saved in every checkpoint."""

    def __init__(self, model, optimizer, history, runtime, schedule, initial_learning_rate: float):
        self.model, self.optimizer, self.history, self.runtime = model, optimizer, history, runtime
        self.schedule = schedule  # step -> fit's own learning rate
        self.initial_learning_rate = initial_learning_rate  # TrainConfig.lr, Keras' initial rate
        self.lr_override: float | None = None
        self.lr_scale = 1.0
        self.step = 0  # the global step being run (or about to run)
        model.stop_training = False  # Keras' Model.stop_training: callbacks set it to stop after the batch

    @property
    def stop_training(self) -> bool:
        return self.model.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self.model.stop_training = value

    @property
    def learning_rate(self) -> float:
        """The rate of the current step (at an epoch's end: its last step, as Keras' optimizer reports it)."""
        base = self.lr_override if self.lr_override is not None else self.schedule(self.step)
        return base * self.lr_scale

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        """Keras' ``optimizer.learning_rate = value``: every later step uses ``value``, not the schedule."""
        self.lr_override, self.lr_scale = float(value), 1.0

    def scale_learning_rate(self, factor: float) -> None:
        """Every later step uses ``factor`` times the rate it would have had."""
        self.lr_scale *= factor

    def state_dict(self) -> dict:
        return {"lr_override": self.lr_override, "lr_scale": self.lr_scale, "stop_training": self.stop_training}

    def load_state_dict(self, state: dict) -> None:
        self.lr_override, self.lr_scale = state["lr_override"], state["lr_scale"]
        self.stop_training = state["stop_training"]
