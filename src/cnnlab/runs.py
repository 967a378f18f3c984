"""The policy of run names and resumes (the files of a run directory are ``rundir.RunDir``'s).

A run directory holds one training run, never two: a new run on an existing name is refused (``--resume``
continues it, ``--overwrite`` moves it aside to NAME.old-TIME).

A resume continues the run that is there with its own configuration. The flags it takes change where and how
fast it runs, never what it computes (``RESUME_MAY_CHANGE``), except that other ``--threads`` or another
``--device`` sum floats in another order: the last bits (1e-7 here) then differ from an unbroken run's, which
the same ones repeat exactly. Any other flag that differs from the saved value is refused with the reason.
``--epochs`` in particular: the learning-rate schedule spans the run's epochs, so more epochs would change every
step from here on; train a new run instead.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext, suppress
from pathlib import Path

from .data.folders import files_identity, folder_slug, scan_folder
from .errors import RunError
from .rundir import RunDir
from .train.config import TrainConfig, check_values, flag_name

# --- naming a new run -------------------------------------------------------------------------------------


def _refuse_taken(run_dir: Path) -> None:
    """Raise the message for a name that is taken: locked by a live writer, or a finished/stopped run."""
    taken = RunDir(run_dir)
    if not run_dir.is_dir():
        what, config = "a file", None
    else:
        with taken.lock(writer=False):  # raises 'another training process ...' while one is writing
            pass
        config = taken.record().config if taken.is_run() else None  # tolerant: a config.json that does not read
        if config is not None:
            what = f"a run ({config.get('model', '?')}, epochs={config.get('epochs', '?')})"
        else:
            what = "a folder" if any(run_dir.iterdir()) else "an empty folder"
    resume = f"Continue it with 'cnnlab train --resume {run_dir}', choose" if config is not None else "Choose"
    raise RunError(
        f"{run_dir}: {what} named {run_dir.name!r} is already there. {resume} another --name, or pass --overwrite "
        f"to move it aside (to {run_dir.name}.old-TIME; nothing is deleted) and start a new run"
    )


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: --out-dir is a file, not a folder for run directories")


def baseline_name(name: str) -> str:
    """The name of --compare-without's run without augmentation, beside the run ``name`` it is compared with."""
    return f"{name}-without-augmentation"


def named_run_dirs(cfg: TrainConfig, compare_without: bool = False) -> list[Path]:
    """The folders a named run takes (an unnamed one: none): its own and, with ``compare_without``, its baseline's."""
    _check_out_dir(Path(cfg.out_dir))
    names = (cfg.run_name, baseline_name(cfg.run_name)) if compare_without else (cfg.run_name,)
    return [Path(cfg.out_dir) / name for name in names] if cfg.run_name else []


def check_name_free(cfg: TrainConfig, compare_without: bool = False) -> None:
    """Refuse a named run whose folder, or with ``compare_without`` its baseline's, exists (before any training: the
    command line asks before any data is loaded, ``new_run_dir`` again as it claims the folder)."""
    for run_dir in named_run_dirs(cfg, compare_without):
        if run_dir.exists() or run_dir.is_symlink():
            _refuse_taken(run_dir)


def set_aside(run_dir: Path) -> Path | None:
    """``--overwrite``: move an existing run to ``NAME.old-YYYYmmdd-HHMMSS`` (never while a process writes
    to it); returns the new place, or None when nothing was there."""
    run_dir = Path(run_dir)
    if not (run_dir.exists() or run_dir.is_symlink()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    a_run = run_dir.is_dir() and not run_dir.is_symlink()
    guard = RunDir(run_dir).lock(writer=False) if a_run else nullcontext()  # never while a process writes to it
    with guard:
        os.rename(run_dir, target)
    return target


def new_run_dir(cfg: TrainConfig, compare_without: bool = False) -> Path:
    """Create and claim the run's folder: ``--name`` exactly (refused if taken, or its baseline's), else
    MODEL-DATA-TIME with a suffix until free. ``mkdir`` without ``exist_ok`` claims it: no two processes share one."""
    out = Path(cfg.out_dir)
    check_name_free(cfg, compare_without)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.run_name:
        run_dir = out / cfg.run_name
        try:
            run_dir.mkdir()
        except FileExistsError:
            _refuse_taken(run_dir)
        return run_dir
    data = folder_slug(cfg.data) if cfg.data else cfg.dataset  # an image folder: 'dogs-vs-cats-small_train'
    name = f"{cfg.model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in range(1, 10_000):
        run_dir = out / (name if suffix == 1 else f"{name}-{suffix}")
        with suppress(FileExistsError):  # taken: the next suffix
            run_dir.mkdir()
            return run_dir
    raise RunError(f"{out}: no free run name for {name}")


# --- resuming ---------------------------------------------------------------------------------------------

# What a resume may change: where the files are and how fast it runs (the module's docstring says the rest).
RESUME_MAY_CHANGE = ("progress", "threads", "device", "compile", "data_dir", "cache_dir")
# The settings that name a folder the run reads: config.json keeps them absolute (run.train_run), so that a run is
# read again from anywhere, and a resume's flag that names the same folder otherwise written is no change.
FOLDERS = ("data", "val_dir", "data_dir", "cache_dir")


def resume_config(run_dir: str | Path, flags: dict, model: str | None = None) -> TrainConfig:
    """The saved configuration of ``run_dir`` with the flags a resume may change; any other flag that differs
    from the saved value is refused, naming it (``flags``: None means not given)."""
    saved = RunDir(run_dir).config()
    given = {k: v for k, v in flags.items() if v is not None}
    check_values(given, "flag")
    if model is not None and model != saved.model:
        raise RunError(f"{run_dir}: a run of {saved.model}, not {model}; resume it without naming a model")
    if "model_options" in given:
        given["model_options"] = {**saved.model_options, **given["model_options"]}
    for key in set(FOLDERS) & given.keys():
        if getattr(saved, key) and os.path.abspath(given[key]) == os.path.abspath(getattr(saved, key)):
            given[key] = getattr(saved, key)
    # An image folder moved elsewhere (--data, --val-dir) resumes when it holds the files the run trained on
    moved = {k: given.pop(k) for k in ("data", "val_dir") if k in given and getattr(saved, k) not in (None, given[k])}
    if refused := sorted(k for k, v in given.items() if k not in RESUME_MAY_CHANGE and v != getattr(saved, k)):
        changes = ", ".join(f"{flag_name(k)} {given[k]!r} (the run has {getattr(saved, k)!r})" for k in refused)
        why = ""
        if "epochs" in refused:
            why = " (the learning-rate schedule spans the run's epochs: more epochs change every step from here on)"
        folders = " and ".join(flag_name(key) for key in ("data", "val_dir") if getattr(saved, key))
        moved_folders = f" (and {folders}: its image folders moved elsewhere)" if folders else ""
        raise RunError(
            f"{run_dir}: a resume continues the run as it was configured and cannot change {changes}{why}. "
            f"It takes only {', '.join(map(flag_name, RESUME_MAY_CHANGE))}{moved_folders}; for other settings train "
            "a new run (--name NEW)"
        )
    if moved:
        check_moved_files(run_dir, saved, moved)
    for key in ("data", "val_dir"):  # the run's images moved since: say how a resume finds them
        if key not in moved and getattr(saved, key) and not Path(getattr(saved, key)).exists():
            raise RunError(
                f"{run_dir}: {getattr(saved, key)}: no such folder; if it was moved, give {flag_name(key)} NEWPLACE"
            )
    allowed = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    return TrainConfig.from_dict({**saved.to_dict(), **allowed, **moved}, str(Path(run_dir) / "config.json"))


def check_moved_files(run_dir, saved: TrainConfig, moved: dict) -> None:
    """Refuse image folders that a resume names elsewhere (``moved``: --data, --val-dir) when they hold other files
    than the run trained on: the checkpoint keeps counts alone. A run from before files_identity goes by its counts."""
    expected = RunDir(run_dir).model_info()["data"].get("files")
    folders = [moved.get(key, getattr(saved, key)) for key in ("data", "val_dir")]
    if expected and expected != files_identity(*(scan_folder(folder) for folder in folders if folder)):
        given = " and ".join(f"{flag_name(k)} {v}" for k, v in moved.items())
        was = " and ".join(getattr(saved, k) for k in moved)
        raise RunError(
            f"{run_dir}: {given}: not the files the run trained on in {was} (other names or sizes); "
            "a resume continues on the run's own images"
        )
