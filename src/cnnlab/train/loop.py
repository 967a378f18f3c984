"""The training loop: one function, read top to bottom.

``fit`` trains a model on a data source (see data/source.py) with the settings of a ``TrainConfig``: it
builds the optimizer, walks the epochs, evaluates after each one, calls Keras-style callbacks, writes
resumable checkpoints, and returns a Keras-style ``History``. Everything that depends on where it runs
(device, processes, printing, precision) is asked of the ``Runtime``; with N processes each computes its
rows of every global batch and DistributedDataParallel averages the gradients, so the steps are those of
one process.
"""

from __future__ import annotations

import functools
import os
import signal
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..augment import Augment
from ..checkpoint import resume_point
from ..data.arrays import ArraySource, as_array_dataset, as_validation_dataset
from ..data.datasets import ArrayDataset, stratified_split
from ..data.loader import Preprocess, epoch_seed
from ..data.source import DataSource
from ..environment import reuse_freed_memory
from ..errors import TrainingInterrupted, UsageError, WrongType, path_argument
from ..evaluation.metrics import predict_logits
from ..models import create_model
from .callbacks import Callback, CallbackList, EarlyStopping, EpochTimer, NonFiniteLoss, batch_logs
from .checks import check_fits_source, check_model_options, checked_forward
from .config import NOT_IN_TRAINING, STANDARDIZE_WHY, TrainConfig
from .ema import WeightAverage
from .optim import add_l2_gradient, l2_gradient_groups, lr_at, make_optimizer
from .recipes import config_for
from .runtime import Runtime
from .state import History, TrainState


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Keras' categorical cross-entropy from logits, with its ``label_smoothing``: the targets are
    (1 - s) * one_hot + s / classes. PyTorch's ``label_smoothing`` is the same rule (tests/test_losses.py
    checks the values against Keras' own output)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def as_source(data, validation_data=None, val_split: float = 0.0, seed: int = 0) -> DataSource:
    """What ``fit`` trains on: a data source, or Keras' forms: ``(x, y)`` / an ``ArrayDataset`` with
    ``validation_data`` the same way. ``val_split`` holds out that fraction of arrays, stratified with ``seed``,
    as ``--val-split`` does for a dataset (Keras' ``validation_split`` takes the last rows instead)."""
    if isinstance(data, DataSource):
        if validation_data is not None:
            raise UsageError("a data source brings its own validation split; do not pass validation_data too")
        return data
    if validation_data is not None and not isinstance(validation_data, (tuple, ArrayDataset)):
        raise WrongType(
            f"fit(): validation_data must be (x, y) or an ArrayDataset, got {type(validation_data).__name__}"
        )
    for given, name in ((data, "data"), (validation_data, "validation_data")):
        if isinstance(given, tuple) and len(given) != 2:
            raise UsageError(f"fit(): {name} as arrays is (x, y), images and labels; got a tuple of {len(given)}")
    if isinstance(data, tuple) and not val_split:
        return ArraySource.from_arrays(*data, validation_data)
    if isinstance(data, tuple):
        train = as_array_dataset(*data)
    elif isinstance(data, ArrayDataset):
        train = data
    else:
        raise WrongType(f"fit() takes a DataSource, an ArrayDataset or (x, y), got {type(data).__name__}")
    if not val_split:
        return ArraySource(train, as_validation_dataset(validation_data, train.classes))
    if validation_data is not None:
        raise UsageError(
            f"fit(): config.val_split {val_split:g} holds out validation data, and validation_data is given too"
        )
    keep, held = stratified_split(train.labels, val_split, seed, train.classes, f"val_split {val_split:g}")
    return ArraySource(train.subset(keep), train.subset(held))


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


def _check_arguments(model, config, callbacks, runtime, augment, run_dir, verbose) -> list[Callback]:
    """fit's arguments of the wrong type, refused with their name (not with torch's message from deep inside)."""
    if not isinstance(model, torch.nn.Module):
        raise WrongType(f"fit(): model must be a torch.nn.Module, got {type(model).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise WrongType(
            f"fit(): config must be a TrainConfig (cnnlab.config_for(model, ...) makes one), "
            f"got {type(config).__name__}"
        )
    if augment is not None and not callable(augment):
        raise WrongType(f"fit(): augment must be a batch transform f(x, generator=g), got {type(augment).__name__}")
    if run_dir is not None:
        path_argument(run_dir, "fit(): run_dir")
    if verbose not in ("auto", 0, 1, 2):
        raise UsageError(f"fit(): verbose is 0 (silent), 1 (bars), 2 (a line per epoch) or 'auto', got {verbose!r}")
    if runtime is not None and not isinstance(runtime, Runtime):
        raise WrongType(f"fit(): runtime must be a cnnlab Runtime, got {type(runtime).__name__}")
    callbacks = [] if callbacks is None else callbacks  # Keras' default
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise WrongType(f"fit(): callbacks must be a list of Callback, got {type(callbacks).__name__}")
    wrong = [type(cb).__name__ for cb in callbacks if not isinstance(cb, Callback)]
    if wrong:
        raise WrongType(f"fit(): callbacks must be cnnlab Callback instances, got {', '.join(wrong)}")
    return list(callbacks)


def seeded_init(model: torch.nn.Module, seed: int) -> None:
    """Give a model that comes straight from ``create_model`` the initial weights of ``seed``: those of
    ``torch.manual_seed(seed); create_model(...)``, as ``cnnlab train --seed`` builds it. A model fit has trained,
    whose weights were loaded (``load_weights_into``, ``load_state_dict``: they count as changes to the tensors)
    or changed in place, keeps its weights."""
    name = getattr(model, "cnnlab_name", None)
    if name is None or getattr(model, "cnnlab_initialised", False):
        return
    with torch.random.fork_rng(devices=[]):  # the caller's random stream goes on as if nothing was drawn
        torch.manual_seed(seed)
        fresh = create_model(name, **model.cnnlab_options)
    versions = lambda m: [t._version for t in m.state_dict(keep_vars=True).values()]  # noqa: E731
    if versions(model) == versions(fresh):  # its tensors were not written to since create_model made them
        model.load_state_dict(fresh.state_dict())


@contextmanager
def stop_on_signals(enabled: bool):
    """SIGINT/SIGTERM inside the block end the current step instead of the process: the loop then writes a
    checkpoint and stops cleanly. Yields the list of signals received; the previous handlers come back after."""
    received: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM) if enabled else ():
        with suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, lambda s, f: received.append(s))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted(received: list[int], where: str, run_dir) -> TrainingInterrupted:
    """The error that ends a run stopped by a signal (another process's, when only it got one), once its
    checkpoint is written."""
    name = signal.Signals(received[0]).name if received else "a signal"
    return TrainingInterrupted(
        f"interrupted by {name} {where}; checkpoint written. Resume with: cnnlab train --resume {run_dir}",
        received[0] if received else signal.SIGTERM,
    )


@contextmanager
def deterministic_algorithms(enabled: bool):
    """CPU runs repeat exactly anyway; on a GPU that needs deterministic kernels (slower), only inside the block."""
    was = torch.are_deterministic_algorithms_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


@dataclass
class _Plan:
    """What a call of ``fit`` fixed before its first step: the settings, the data, the network to step."""

    cfg: TrainConfig
    rt: Runtime
    source: DataSource
    run_dir: object
    augment: object
    net: torch.nn.Module = None  # the module the steps run (DDP-wrapped, compiled)
    eval_net: torch.nn.Module = None
    train_loader: object = None
    train_pre: Preprocess = None
    eval_pre: Preprocess = None
    steps_per_epoch: int = 0
    last_epoch_steps: int = 0  # steps of the last epoch trained: fewer when a callback stopped it after a batch
    epochs: int = 0
    limit: int = 0  # batches of a --dry-run
    verbose: int = 1  # Keras' fit(verbose=): 0 silent, 1 progress bars, 2 one line per epoch
    l2_gradient: list = field(default_factory=list)
    regularization: object = None
    watch: _NonFiniteWatch = None
    model_checked: bool = False  # the first step's answer was checked against the data (checked_forward)

    def non_finite(self, value: float, global_step: int) -> NonFiniteLoss:
        epoch, step = divmod(global_step, self.steps_per_epoch)
        kept = "the last good checkpoint is kept; " if self.run_dir else ""
        return NonFiniteLoss(
            f"loss is {value} at epoch {epoch + 1}, step {step + 1}; stopped ({kept}lower --lr or use --nonfinite skip)"
        )


def _prepare(model, source: DataSource, cfg: TrainConfig, rt: Runtime, augment, run_dir) -> tuple[_Plan, TrainState]:
    """The model on its device, the loader, the optimizer and the state: everything before the first step."""
    plan = _Plan(cfg, rt, source, run_dir, augment, limit=2 if cfg.dry_run else 0)
    if cfg.sync_bn and rt.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(rt.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    # The model carries the normalisation it was trained with: evaluate, predict and export read it there.
    norm = model.cnnlab_input_norm = getattr(model, "cnnlab_input_norm", None) or source.input_norm()
    plan.train_pre = Preprocess(norm, rt.device, cfg.channels_last, augment)
    plan.eval_pre = Preprocess(norm, rt.device, cfg.channels_last)
    plan.train_loader = source.loader("train", cfg.batch_size, rt.device, train=True, seed=cfg.seed, shard=rt.shard)
    n = len(plan.train_loader)
    plan.steps_per_epoch = min(n, plan.limit) if plan.limit else n
    plan.epochs = 1 if cfg.dry_run else cfg.epochs
    # Keras-style L2 reaches the gradient in the optimizer (Adam, SGD) or through add_l2_gradient (AdamW);
    # its value (regularization_loss) is only added to the logged losses, as Keras reports them.
    plan.l2_gradient = l2_gradient_groups(model, cfg)
    plan.regularization = getattr(model, "regularization_loss", None)
    # A host sync per step is free on CPU, costly on a GPU: there the first bad step is noted on the device.
    plan.watch = _NonFiniteWatch(rt.device, plan.non_finite)
    schedule = functools.partial(lr_at, total=plan.epochs * plan.steps_per_epoch, cfg=cfg)
    # fp16 needs loss scaling against underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    state = TrainState(model, make_optimizer(model, cfg), rt, schedule, cfg.lr, scaler=scaler, ema=ema)
    state.data = {"train_images": source.size("train"), "steps_per_epoch": plan.steps_per_epoch}
    return plan, state


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
    verbose="auto",
) -> History:
    """Train ``model`` on ``data``'s "train" split and validate on its "val" split after every epoch.

    ``data`` is a data source (data/source.py), or as in Keras ``(x, y)`` or an ``ArrayDataset`` with
    ``validation_data`` given the same way (or None).

    ``run_dir`` receives resumable checkpoints; with ``resume=True`` training continues from the newest
    complete one there, and ends with the same weights as a run that was never stopped.
    ``augment`` is a batch transform ``f(x, generator=g)`` applied to training batches (see cnnlab.augment);
    ``config.augment`` (a recipe's, say) builds one. ``config.early_stopping`` adds Keras' ``EarlyStopping`` on
    val_loss, and ``config.val_split`` holds out part of arrays given without ``validation_data``.
    Without ``config`` a model made by ``create_model`` trains with its recipe, as ``cnnlab train NAME`` does
    (``config_for(model, epochs=2)`` changes one setting of it).

    The seed (``config.seed``) decides the data order, augmentation, dropout and, for a model that comes straight
    from ``create_model``, its initial weights (those ``cnnlab train --seed`` starts from): two calls with
    equal arguments give equal results. A model already trained, or whose weights were loaded or changed, keeps
    its weights (see ``seeded_init``).

    ``verbose`` is Keras': 0 prints nothing, 1 progress bars and a line per epoch, 2 a line per epoch only;
    "auto" is 1, or 2 with ``config.progress`` False (``cnnlab train --no-progress``).
    """
    callbacks = _check_arguments(model, config, callbacks, runtime, augment, run_dir, verbose)
    cfg = config or config_for(model)
    cfg.validate()
    rt = runtime or Runtime(cfg.device, cfg.precision, cfg.threads, cfg.timeout)
    source = as_source(data, validation_data, cfg.val_split, cfg.seed)
    check_fits_source(cfg, source, rt, model)
    if cfg.augment:
        if augment is not None:
            raise UsageError("fit(): augmentation is given twice, as augment= and as config.augment; give one")
        augment = Augment(**cfg.augment)
    if isinstance(augment, Augment) and (standardizing := [k for k in NOT_IN_TRAINING if getattr(augment.config, k)]):
        raise UsageError(
            f"fit(): augment's {', '.join(standardizing)} would change the training images only; {STANDARDIZE_WHY}"
        )
    if cfg.early_stopping:
        if source.size("val") == 0:  # else it would warn every epoch and never stop
            raise UsageError(f"early_stopping {cfg.early_stopping} watches val_loss: give validation data")
        callbacks.append(EarlyStopping(monitor="val_loss", patience=cfg.early_stopping, verbose=int(verbose != 0)))
    check_model_options(model, cfg)
    # Rank 0 reads the checkpoint (saying what it skipped) and hands it to the others: the run directory needs
    # to be on its machine only; DistributedDataParallel then starts every process from rank 0's weights.
    found = rt.broadcast_object(resume_point(run_dir, resume, rt.print) if rt.is_main else None)
    if not found:
        seeded_init(model, cfg.seed)
    plan, state = _prepare(model, source, cfg, rt, augment, run_dir)
    plan.verbose = (1 if cfg.progress else 2) if verbose == "auto" else verbose
    params = {"verbose": plan.verbose, "epochs": plan.epochs, "steps": plan.steps_per_epoch}  # Keras' params
    state.callbacks = CallbackList([EpochTimer(), *callbacks], state, params)
    if found:
        state.resume(found, plan.epochs, plan.verbose)
    plan.net = rt.wrap(state.model)
    if cfg.compile:  # compiled for the steps only; the model (plain keys) is what is saved and evaluated
        plan.net = torch.compile(plan.net)
    plan.eval_net = state.model if rt.distributed else plan.net
    if state.ema is not None and plan.verbose:
        rt.print(f"validating and keeping a moving average of the weights (ema {cfg.ema}; --ema 0 turns it off)")
    with (
        stop_on_signals(run_dir is not None) as received,
        deterministic_algorithms(cfg.deterministic),
        reuse_freed_memory(),
    ):
        state.begin()
        for epoch in range(state.epoch, plan.epochs):
            if state.stop_training:  # a callback stopped it (before a resume too: the checkpoint says so)
                break
            saved = end_epoch(plan, state, train_epoch(plan, state, epoch, received))
            if rt.any(bool(received))[0]:  # a signal in validation or the callbacks: stop at the epoch's end
                if not saved:
                    state.save(run_dir)
                raise interrupted(received, f"after epoch {state.epoch}", run_dir)
    state.model.cnnlab_initialised = True  # a later fit continues from these weights
    if state.ema is not None:  # as Keras does at the end of fit: the model keeps the average
        state.ema.copy_to_model()
    if rt.distributed and not cfg.sync_bn:  # the model fit returns is the same on every process
        rt.broadcast_buffers(state.model)
    skipped = int(sum(state.history.history.get("skipped_steps", [])))
    if skipped and plan.verbose:
        total = (len(state.history.epoch) - 1) * plan.steps_per_epoch + (plan.last_epoch_steps or plan.steps_per_epoch)
        rt.print(f"{skipped} of {total} steps had a non-finite loss and were skipped (--nonfinite skip)")
    last_epoch = {key: values[-1] for key, values in state.history.history.items() if values}
    state.callbacks.on_train_end(last_epoch or None)  # as Keras' fit: the last epoch's logs
    state.history.params, state.history.model = params, state.model
    return state.history


def train_epoch(plan: _Plan, state: TrainState, epoch: int, received: list[int]) -> torch.Tensor:
    """The steps of one epoch (from where a resume left it); their summed loss, correct answers, rows and
    skipped steps, over all processes once reduced."""
    cfg, rt, spe = plan.cfg, plan.rt, plan.steps_per_epoch
    state.model.train()
    first = state.step_in_epoch if epoch == state.epoch else 0
    state.epoch, state.step, state.last_lr = epoch, epoch * spe + first, None
    state.callbacks.on_epoch_begin(epoch, {})
    sums = torch.zeros(4, device=rt.device, dtype=torch.float64)
    if first and state.partial is not None:  # the metrics of the steps done before the restart
        sums += torch.tensor(state.partial, dtype=torch.float64, device=rt.device)
    bar = rt.progress(spe, f"Epoch {epoch + 1}/{plan.epochs}", plan.verbose == 1)
    bar.update(first)
    # The last clean_epochs see unaugmented images (no generator: Preprocess does not augment), so the
    # model ends on the distribution it is tested on; chosen by measurement (benchmarks/README.md).
    augmenting = plan.augment is not None and epoch < cfg.epochs - cfg.clean_epochs  # a --dry-run augments
    aug_gen = torch.Generator(device=rt.device) if augmenting else None
    for step, (images, labels) in enumerate(plan.train_loader.epoch(epoch, first), start=first):
        if step >= spe:  # --dry-run
            break
        loss, stopping = train_step(plan, state, images, labels, step, aug_gen, sums, bool(received))
        if state.callbacks.wants_batches:
            state.callbacks.on_train_batch_end(step, batch_logs(sums, loss, plan.regularization, state.last_lr))
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{sums[0].item() / max(sums[2].item(), 1):.4f}", lr=f"{state.last_lr:.2e}")
        state.step_in_epoch = done = step + 1
        if stopping:
            bar.close()
            state.save(plan.run_dir, sums)
            raise interrupted(received, f"at epoch {epoch + 1}, step {done}", plan.run_dir)
        if cfg.checkpoint_steps and done % cfg.checkpoint_steps == 0 and done < spe:
            state.save(plan.run_dir, sums)
        if state.stop_training:  # Keras stops after the batch, then validates and ends the epoch
            break
    bar.close()
    plan.watch.check()  # before the epoch's metrics and checkpoint
    return sums


def train_step(plan: _Plan, state: TrainState, images, labels, step: int, aug_gen, sums, stop_asked: bool):
    """One optimizer step on this process's rows of one global batch, added to ``sums``. Returns the loss and
    whether every process is to stop (a signal reached one of them)."""
    cfg, rt = plan.cfg, plan.rt
    global_step = state.step = state.epoch * plan.steps_per_epoch + step
    # Dropout's draws, seeded per (step, process): replayed exactly after a restart, any world size.
    torch.manual_seed(epoch_seed(cfg.seed, global_step, salt=3) + rt.rank)
    batch_len = plan.train_loader.global_batch_len(step)
    lr = state.last_lr = state.learning_rate  # the schedule's, unless a callback changed it
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    if state.callbacks.wants_batches:
        state.callbacks.on_train_batch_begin(step, {})
    if aug_gen is not None:  # seeded per step: any step can be replayed after a restart
        aug_gen.manual_seed(epoch_seed(cfg.seed, global_step, salt=1))
    with rt.autocast():
        inputs = plan.train_pre(images, aug_gen, batch_len, rt.shard.rows(batch_len))
        if plan.model_checked:
            logits = plan.net(inputs)
        else:
            logits = checked_forward(plan.net, state.model, inputs, plan.source)
            plan.model_checked = True
        loss = classification_loss(logits, labels, cfg.label_smoothing)
        # DDP averages the processes' gradients; an uneven last batch is weighted by its rows.
        share = len(labels) * rt.world_size / batch_len
        loss_to_step = loss * share if share != 1 else loss
    bad, stopping = False, stop_asked
    if rt.device.type == "cpu" or rt.distributed or cfg.nonfinite == "skip":
        # Processes must agree on a bad step: one small all-reduce a step carries both flags.
        bad, stopping = rt.any(not bool(torch.isfinite(loss)), stop_asked)
        if bad and cfg.nonfinite == "stop":
            raise plan.non_finite(loss.item(), global_step)
    else:  # GPU: note the first bad step on the device (no sync) and read it every 50 steps
        plan.watch.note(loss, global_step)
        if step % 50 == 49:
            plan.watch.check()
    state.optimizer.zero_grad(set_to_none=True)
    if bad:  # --nonfinite skip: counted once (by rank 0), reported with the epoch
        sums[3] += int(rt.is_main)
        return loss, stopping
    state.scaler.scale(loss_to_step).backward()
    if plan.l2_gradient:
        state.scaler.unscale_(state.optimizer)  # fp16: the L2 gradient is added to true-scale gradients
        add_l2_gradient(plan.l2_gradient)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        state.ema.update()
    sums[0] += loss.detach() * len(labels)
    sums[1] += (logits.argmax(1) == labels).sum()
    sums[2] += len(labels)
    return loss, stopping


def end_epoch(plan: _Plan, state: TrainState, sums: torch.Tensor) -> bool:
    """The epoch's metrics (validation with the average of the weights, if one is kept), the callbacks, its
    line, its checkpoint (whether one was written)."""
    cfg, rt, epoch = plan.cfg, plan.rt, state.epoch
    loss_sum, correct, count, skipped = rt.reduce(sums).tolist()
    if skipped > plan.steps_per_epoch / 2:
        raise NonFiniteLoss(
            f"{skipped:.0f} of {plan.steps_per_epoch} steps of epoch {epoch + 1} had a non-finite loss and were "
            "skipped (--nonfinite skip); stopped: the run is diverging (lower --lr, or --nonfinite stop to see where)"
        )
    logs = {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}
    # Keras reports losses with the L2 penalty in them; computed once, at the epoch's final weights.
    penalty = float(plan.regularization()) if plan.regularization is not None else 0.0
    logs["loss"] += penalty
    if rt.distributed and not cfg.sync_bn:
        rt.broadcast_buffers(state.model)
    # With an average of the weights, validation and the callbacks (saved weights) see the average.
    with state.ema.swapped_in() if state.ema is not None else nullcontext():
        if plan.source.size("val") > 0:
            # Keras' validation is its evaluate, with evaluate's hooks; as there, the loss is the training loss,
            # label smoothing included, over every process's rows.
            state.callbacks.on_test_begin({})
            loss_of = functools.partial(classification_loss, label_smoothing=cfg.label_smoothing)
            logits = predict_logits(
                plan.eval_net, plan.source, "val", plan.eval_pre, rt, cfg.eval_batch_size, max_batches=plan.limit,
                batch_hooks=state.callbacks.test_batch_hooks(loss_of),
            )  # fmt: skip
            labels = plan.source.labels("val")[: len(logits)]
            logs["val_loss"] = loss_of(logits, labels).item()
            logs["val_accuracy"] = (logits.argmax(1) == labels).float().mean().item()
            if plan.regularization is not None:
                logs["val_loss"] += float(plan.regularization()) if state.ema is not None else penalty
            state.callbacks.on_test_end({"loss": logs["val_loss"], "accuracy": logs["val_accuracy"]})
        logs["lr"] = state.last_lr if state.last_lr is not None else state.learning_rate
        if cfg.nonfinite == "skip":
            logs["skipped_steps"] = int(skipped)
        state.callbacks.on_epoch_end(epoch, logs)
    state.history.append(logs)
    shown = (_shown(k, v) for k, v in logs.items() if k != "learning_rate")  # Keras' name for lr, added by callbacks
    if plan.verbose:
        rt.print(f"Epoch {epoch + 1}/{plan.epochs} - " + " - ".join(shown))
    plan.last_epoch_steps = state.step_in_epoch
    state.epoch, state.step_in_epoch = epoch + 1, 0
    last = epoch + 1 == plan.epochs or state.stop_training
    if cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
        state.save(plan.run_dir)
        return True
    return False


def _shown(key: str, value) -> str:
    if key == "seconds":
        return f"{key}: {value:.1f}s"
    if key == "lr":
        return f"{key}: {value:.3g}"
    return f"{key}: {value}" if isinstance(value, int) else f"{key}: {value:.4f}"
