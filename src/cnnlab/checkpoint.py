"""Weights and training state on disk: safetensors and JSON only, written atomically.

Nothing read here can execute code: tensors come from safetensors (a flat, typed byte layout) and
everything else from JSON. Optimizer and scheduler states are nested dicts of tensors and numbers;
``flatten_state`` splits them into a flat dict of tensors (saved with safetensors) and a JSON skeleton
that names where each tensor goes, so they round-trip without pickle. Every file is written atomically
(``write_through``): a reader sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import RunError

FORMAT_VERSION = 1


class CheckpointError(RunError):
    """A weights or checkpoint file is missing, damaged, or belongs to another model; names the file."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file (``write_through``); the path written."""
    return write_through(path, lambda tmp: tmp.write_bytes(data))


def write_through(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` beside ``path``, fsync it and rename it to ``path``. The temporary name keeps the suffix, by
    which an exporter picks its format. The temporary file never stays behind, and an OSError (a full disk, say)
    names ``path``: a failed write() carries no file name, and the temporary one would mean nothing to a user."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not every system can sync a folder
        _fsync(path.parent)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- weights -----------------------------------------------------------------------------------------


def save_weights(path: str | Path, model_or_state, metadata: dict | None = None) -> None:
    """Save a model's state dict as safetensors; ``metadata`` (JSON-able) goes in the file's header."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {"cnnlab": json.dumps(metadata or {}, sort_keys=True), "format_version": str(FORMAT_VERSION)}
    atomic_write_bytes(path, st_save(state, metadata=header))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, metadata) of a safetensors file written by ``save_weights`` (or any safetensors file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    # A safetensors file starts with an 8-byte header length and then the JSON header's "{"; torch.save
    # writes a zip ("PK") or a bare pickle (protocol byte 0x80).
    if data[8:9] != b"{" and (data[:2] == b"PK" or data[:1] == b"\x80"):
        raise CheckpointError(
            f"{path}: a pickle/zip file (torch.save format); cnnlab loads only safetensors, which cannot execute code"
        )
    try:
        state = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    with safe_open(str(path), "pt") as f:
        header = f.metadata() or {}
    try:
        meta = json.loads(header.get("cnnlab", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: damaged metadata in the safetensors header") from None
    return state, meta


def load_weights_into(model: torch.nn.Module, path: str | Path) -> dict:
    """Load ``path`` into ``model``, refusing weights of another shape or model. Returns the metadata."""
    state, meta = read_weights(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        name = meta.get("model", "another model")
        raise CheckpointError(
            f"{path}: weights of {name} do not fit {getattr(model, 'cnnlab_name', type(model).__name__)}"
            f" (missing {missing[:3]}{'...' if len(missing) > 3 else ''},"
            f" unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"{path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict(state)
    return meta


# --- nested states (optimizer, scheduler, RNG) without pickle -------------------------------------------


def flatten_state(obj, prefix: str = "s") -> tuple[dict[str, torch.Tensor], object]:
    """Split a nested structure into (tensors by key, JSON skeleton with {"__tensor__": key} markers)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x, key):
        if isinstance(x, torch.Tensor):
            tensors[key] = x.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(x, dict):
            # JSON keys are strings; remember integer keys (optimizer state is keyed by parameter index).
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(x)], "tuple": isinstance(x, tuple)}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store a {type(x).__name__} in a checkpoint without pickle")

    return tensors, walk(obj, prefix)


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    def walk(x):
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__dict__" in x:
                return {walk(k): walk(v) for k, v in x["__dict__"]}
            if "__list__" in x:
                items = [walk(v) for v in x["__list__"]]
                return tuple(items) if x.get("tuple") else items
        return x

    return walk(skeleton)


# --- resumable training checkpoints ---------------------------------------------------------------------
#
# run_dir/checkpoints/step-00001234/{model.safetensors, state.safetensors, state.json, MANIFEST.json}
# A checkpoint is written into a hidden temporary folder, its manifest (sha256 of every file) last,
# then the folder is renamed into place: a folder without a valid manifest is never taken.

CHECKPOINTS = "checkpoints"
CHECKPOINT_FILES = ("model.safetensors", "state.safetensors", "state.json")  # each listed in MANIFEST.json


def save_checkpoint(run_dir: str | Path, tag: str, model_state: dict, train_state: dict, keep: int = 2) -> Path:
    """Write a complete checkpoint ``tag`` under ``run_dir``; keep it and the newest ``keep - 1`` before it
    (``keep=0``: every one before it).

    The checkpoint just written is never removed. Any numbered after it belongs to a stretch of training this
    run has left: a resume starts from the newest checkpoint that verifies, so later ones are damaged (and
    were reported when the resume skipped them); they are removed so that they can never outrank this one.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / tag
    for stale in root.glob(".*.tmp-*"):  # half-written by a process that was killed (one writer: the run lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{tag}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        tensors, skeleton = flatten_state(train_state)
        atomic_write_bytes(
            tmp / "model.safetensors", st_save({k: v.detach().cpu().contiguous() for k, v in model_state.items()})
        )
        atomic_write_bytes(tmp / "state.safetensors", st_save(tensors))
        atomic_write_json(tmp / "state.json", {"format_version": FORMAT_VERSION, "state": skeleton})
        _checkpoint_hook("before-manifest", tmp)
        atomic_write_json(
            tmp / "MANIFEST.json", {"tag": tag, "files": {f: sha256_file(tmp / f) for f in CHECKPOINT_FILES}}
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        with contextlib.suppress(OSError):
            _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    others = [p for p in list_checkpoints(run_dir) if p.name != tag]
    later = [p for p in others if p.name > tag]  # tags are zero-padded step numbers: names sort as numbers
    earlier = [p for p in others if p.name < tag]
    for old in later + (earlier[: max(0, len(earlier) - (keep - 1))] if keep else []):
        shutil.rmtree(old, ignore_errors=True)
    return final


_writes = {"count": 0}


def _checkpoint_hook(stage: str, folder: Path) -> None:
    """Test hook: CNNLAB_CHECKPOINT_PAUSE=stage:N makes the N-th checkpoint write of this process stop at
    ``stage`` and wait, so that a test can kill the process in the middle of writing."""
    want = os.environ.get("CNNLAB_CHECKPOINT_PAUSE", "")
    if not want.startswith(stage):
        return
    _writes["count"] += 1
    if _writes["count"] == int(want.partition(":")[2] or 1):
        (folder.parent / f"paused-{stage}").write_text(str(os.getpid()))
        time.sleep(3600)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first (validity is checked on load)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "MANIFEST.json").is_file()
    )


def verify_checkpoint(folder: Path) -> None:
    manifest = read_json(folder / "MANIFEST.json")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not set(CHECKPOINT_FILES) <= set(files):
        raise CheckpointError(f"{folder / 'MANIFEST.json'}: does not list {', '.join(CHECKPOINT_FILES)}")
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name:
            raise CheckpointError(f"{folder}: manifest names a path outside the checkpoint: {name!r}")
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in the manifest but missing")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{path}: checksum mismatch (damaged or half-written)")


def load_checkpoint(folder: str | Path) -> tuple[dict, dict]:
    """(model state dict, training state) of a verified checkpoint folder."""
    folder = Path(folder)
    verify_checkpoint(folder)
    model_state, _ = read_weights(folder / "model.safetensors")
    tensors, _ = read_weights(folder / "state.safetensors")
    return model_state, unflatten_state(read_json(folder / "state.json")["state"], tensors)


def latest_checkpoint(run_dir: str | Path) -> tuple[tuple[Path, dict, dict] | None, list[str]]:
    """(the newest checkpoint that verifies, with its contents, or None; one line for each checkpoint folder
    skipped, saying why: damaged, without a manifest, or half-written)."""
    root = Path(run_dir) / CHECKPOINTS
    skipped = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and p.name.startswith("."):
            skipped.append(f"{p}: half-written by a process that was stopped (removed at the next checkpoint)")
        elif p.is_dir() and not (p / "MANIFEST.json").is_file():
            skipped.append(f"{p}: no MANIFEST.json (not a complete checkpoint)")
    for folder in reversed(list_checkpoints(run_dir)):
        try:
            return (folder, *load_checkpoint(folder)), skipped
        except CheckpointError as e:
            skipped.append(f"{folder}: damaged ({e})")
    return None, skipped


def resume_point(run_dir: str | Path | None, resume: bool, echo=print) -> tuple[Path, dict, dict] | None:
    """Where a training run starts: None for a new run, else the checkpoint to resume from.

    A new run refuses a folder that holds another run's checkpoints (their higher step numbers would outrank
    its own). A resume says which checkpoints it skipped and why, and refuses to start from scratch when none
    is usable."""
    if not resume:
        if run_dir is not None and (existing := list_checkpoints(run_dir)):
            raise CheckpointError(
                f"{run_dir}: holds the checkpoints of an earlier run (newest {existing[-1].name}); resume it or "
                "train into another folder"
            )
        return None
    if run_dir is None:
        raise ValueError("resuming needs the run directory (run_dir)")
    found, skipped = latest_checkpoint(run_dir)
    for line in skipped:
        echo(f"skipped checkpoint {line}")
    if found is None:
        raise no_checkpoint_error(run_dir, skipped)
    return found


def no_checkpoint_error(run_dir: str | Path, skipped: list[str] = ()) -> CheckpointError:
    """The refusal of a resume with nothing to resume from, listing what was found."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        seen = f"there is no {CHECKPOINTS}/ folder"
    elif skipped:
        seen = f"{len(skipped)} checkpoint folder(s), none usable (listed above)"
    else:
        entries = sorted(p.name for p in root.iterdir())
        seen = f"{CHECKPOINTS}/ holds " + (", ".join(entries[:5]) if entries else "nothing")
    return CheckpointError(
        f"{run_dir}: no checkpoint to resume from ({seen}); nothing was trained. To train this run again from "
        f"the start: cnnlab train --config {Path(run_dir) / 'config.json'} --overwrite"
    )
