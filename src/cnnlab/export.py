"""A trained network out of Python training code: ONNX for inference runtimes, and torch.export's pt2.

The exported file takes raw pixels and gives probabilities, so that a deployment needs nothing of cnnlab:

    input   "pixels"         float32 (N, C, H, W), values 0-255: the uint8 image cast to float, RGB for colour
                             (grey models: one channel, like the training images: MNIST's are white on black);
                             N is dynamic
    output  "probabilities"  float32 (N, num_classes): softmax over the classes, in the order of "classes"

Inside the graph: the run's input normalisation ``(x / 255 - mean) / std`` (the training set's statistics),
the network in eval mode (dropout off, BatchNorm's running statistics), and the softmax. Probabilities, not
logits: a Keras user's ``model.predict`` gives them (the lesson's networks end in softmax), and so does
``cnnlab predict``. How an image file becomes that input (resize, centre crop) is in the metadata under
"data"; it and the other keys of the run's model.json ("classes", "input_size", "input_norm", "model",
"options"), "weights" and "weights_sha256" (the safetensors file exported) and the two conventions are in the
ONNX file's metadata_props (lists and dicts as JSON), and in a pt2 archive in its extra file "cnnlab.json".

ONNX: ``torch.onnx.export(..., dynamo=True)`` (torch.export underneath, onnxscript's translations), one
self-contained file (AlexNet's 61M weights make ~245 MB, under protobuf's 2 GB limit).
pt2: ``torch.export.save``, for PyTorch deployments (AOTInductor, ExecuTorch). cnnlab writes pt2 files but
never reads them: ``torch.export.load`` unpickles, so load only files you made yourself.

``cnnlab predict RUN --runtime onnx|torch|auto`` runs image files through onnxruntime with ``OnnxPredictor``;
see ``onnx_predictor_for_run`` for when (and ``AUTO_RUNTIME`` for what ``auto`` picks).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import sha256_file
from .data.loader import InputNorm, Preprocess
from .errors import MissingExtra, RunError, UsageError

FORMATS = ("onnx", "pt2")
RUNTIMES = ("auto", "onnx", "torch")
EXTRA_HINT = "pip install 'cnnlab[export]'"

INPUT_CONVENTION = (
    "pixels: float32 (N, C, H, W), raw values 0-255 (uint8 image cast to float; RGB for colour, grey models "
    "one channel like the training images, MNIST's white on black); normalised inside the graph"
)
OUTPUT_CONVENTION = "probabilities: float32 (N, num_classes), softmax inside the graph, order of 'classes'"
# ONNX metadata_props are strings: these keys hold JSON, the others (model, weights, versions...) plain text
JSON_KEYS = ("classes", "input_size", "input_norm", "options", "data")

# `cnnlab predict --runtime auto`: the runtime per model that benchmarks/inference_speed.py measured faster
# (images/s, batch 1 and 64, PyTorch eager vs onnxruntime, back to back on a quiet machine). A model not in
# the table uses onnxruntime when it is installed and the run holds a current ONNX export, else PyTorch.
# `auto` never exports by itself (a 245 MB file and seconds of work the user did not ask for).
# Model name -> the runtime ``predict --runtime auto`` uses when a current export exists. Measured back to back
# on a 2-core AMD EPYC (benchmarks/results/inference_speed.json): onnxruntime was faster in every pair,
# LeNet-5 5.6-5.7x at batch 1 and 1.6-2.2x at 64, AlexNet-BN 1.5-1.6x and 1.4x. Models not listed: onnx too.
AUTO_RUNTIME: dict[str, str] = {"lenet5": "onnx", "alexnet_bn": "onnx"}


class ExportError(RunError):
    """A file that cannot be exported to or read as an export; the message names it."""


def require(*modules: str) -> None:
    """Import each module or raise ``MissingExtra`` naming the missing ones and the extra that brings them."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtra(f"ONNX export and onnxruntime need {', '.join(missing)}: {EXTRA_HINT}")


# --- the exported graph ----------------------------------------------------------------------------------


class RawPixelClassifier(nn.Module):
    """``model`` between the run's input normalisation and a softmax: raw 0-255 pixels in, probabilities out."""

    def __init__(self, model: nn.Module, input_norm: InputNorm):
        super().__init__()
        self.model = model
        pre = Preprocess(input_norm, "cpu", channels_last=False)  # the one definition of the normalisation
        self.register_buffer("scale", pre.scale)
        self.register_buffer("shift", pre.shift)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(torch.addcmul(self.shift, pixels, self.scale)), dim=1)


@contextmanager
def _exportable(model: nn.Module, input_norm: InputNorm, input_size):
    """(wrapper in eval mode, example batch); the model's train/eval mode is restored afterwards."""
    was_training = model.training
    device = next(model.parameters()).device
    wrapper = RawPixelClassifier(model, input_norm).to(device).eval()
    # Batch 2: an example batch of 1 would let torch.export specialise the batch axis to 1.
    example = torch.randint(0, 256, (2, *input_size), generator=torch.Generator().manual_seed(0)).float()
    try:
        yield wrapper, example.to(device)
    finally:
        model.train(was_training)


def _batch_axis():
    return ({0: torch.export.Dim("batch", min=1, max=65_536)},)


@contextmanager
def _quiet_exporter():
    # The exporter logs a warning per torchvision op it cannot register (torchvision is not a dependency) and
    # torch's pytree a FutureWarning: noise for someone exporting a CNN, not problems of this export.
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            yield
    finally:
        logger.setLevel(level)


def _metadata(input_norm: InputNorm, input_size, num_classes: int, metadata: dict | None) -> dict:
    return {
        "input": INPUT_CONVENTION,
        "output": OUTPUT_CONVENTION,
        "input_size": list(input_size),
        "input_norm": input_norm.to_dict(),
        "classes": [str(i) for i in range(num_classes)],
        "cnnlab_version": _version(),
        "torch_version": torch.__version__,
        **(metadata or {}),
    }


def _version() -> str:
    from . import __version__

    return __version__


def _replace(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)  # a reader never sees half a file
    return path


@torch.no_grad()
def export_onnx(model: nn.Module, input_norm: InputNorm, input_size, path, metadata: dict | None = None) -> Path:
    """Write ``model`` as ONNX to ``path``: raw pixels in, probabilities out, dynamic batch (module docstring).

    ``input_size`` is (C, H, W); ``metadata`` (JSON-able values: classes, pipeline, ...) joins the file's
    metadata_props beside the input/output conventions.
    """
    require("onnx", "onnxscript")
    path = Path(path)
    with _exportable(model, input_norm, input_size) as (wrapper, example), _quiet_exporter():
        num_classes = wrapper(example).shape[1]
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=["pixels"],
            output_names=["probabilities"],
            dynamic_shapes=_batch_axis(),
            verbose=False,
        )
    meta = _metadata(input_norm, input_size, num_classes, metadata)
    program.model.metadata_props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    program.model.doc_string = f"cnnlab classifier. Input {INPUT_CONVENTION}. Output {OUTPUT_CONVENTION}."
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    program.save(tmp, external_data=False)
    return _replace(tmp, path)


@torch.no_grad()
def export_pt2(model: nn.Module, input_norm: InputNorm, input_size, path, metadata: dict | None = None) -> Path:
    """Write ``model`` as a torch.export archive (.pt2), same graph and conventions as ``export_onnx``;
    the metadata goes into the archive's extra file "cnnlab.json"."""
    path = Path(path)
    with _exportable(model, input_norm, input_size) as (wrapper, example):
        num_classes = wrapper(example).shape[1]
        program = torch.export.export(wrapper, (example,), dynamic_shapes=_batch_axis())
    meta = _metadata(input_norm, input_size, num_classes, metadata)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    torch.export.save(program, tmp, extra_files={"cnnlab.json": json.dumps(meta, indent=2)})
    return _replace(tmp, path)


# --- a run's export --------------------------------------------------------------------------------------


def default_path(run_dir, fmt: str = "onnx", weights: str = "last") -> Path:
    """RUN/model.onnx for the last weights, RUN/model-best.onnx for the best (likewise .pt2)."""
    return Path(run_dir) / f"model{'' if weights == 'last' else '-' + weights}.{fmt}"


def export_run(run_dir, fmt: str = "onnx", path=None, weights: str = "last") -> Path:
    """Export a run's trained model (``weights``: last or best) with its classes and image pipeline."""
    from .inference import load_run

    if fmt not in FORMATS:
        raise UsageError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        require("onnx", "onnxscript")
    model, info = load_run(run_dir, weights)
    path = Path(path) if path else default_path(run_dir, fmt, weights)
    metadata = {
        **{k: info[k] for k in ("model", "options", "classes", "input_size", "input_norm", "data") if k in info},
        "weights": weights,
        "weights_sha256": sha256_file(Path(run_dir) / "weights" / f"{weights}.safetensors"),
    }
    export = export_onnx if fmt == "onnx" else export_pt2
    return export(model, model.cnnlab_input_norm, tuple(info["input_size"]), path, metadata)


# --- onnxruntime -----------------------------------------------------------------------------------------


class OnnxPredictor:
    """An exported cnnlab model in onnxruntime (CPU): ``predict_proba(uint8 or 0-255 float (N, C, H, W))``."""

    def __init__(self, path, threads: int = 0):
        require("onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's choice (one per physical core)
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) share no base
            raise ExportError(f"{self.path}: not a readable ONNX model ({str(e).splitlines()[0]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        missing = [k for k in ("classes", "input_size") if k not in self.metadata]
        if missing:
            raise ExportError(f"{self.path}: not a cnnlab export (no {', '.join(missing)} in its metadata)")
        self.info = {k: json.loads(v) if k in JSON_KEYS else v for k, v in self.metadata.items()}
        self.classes = self.info["classes"]
        self.input_size = tuple(self.info["input_size"])
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, pixels, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, num_classes), float32, for raw pixels (N, C, H, W) in 0-255."""
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_size:
            raise UsageError(f"{self.path}: expects pixels (N, {', '.join(map(str, self.input_size))}), got {x.shape}")
        parts = [
            self.session.run(None, {self.input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _note(message: str) -> None:
    print(f"cnnlab: {message}", file=sys.stderr)


def onnx_predictor_for_run(run_dir, weights: str = "last", runtime: str = "auto", echo=_note) -> OnnxPredictor | None:
    """The run's ONNX model in onnxruntime, or None where PyTorch is to predict.

    ``torch``: None. ``onnx``: the run's export of these weights (RUN/model.onnx for last), exported now when
    missing or made from other weights (a resumed run's newer last.safetensors): the user asked for
    onnxruntime. ``auto``: onnxruntime when it is installed, ``AUTO_RUNTIME`` does not say torch for this
    model, and a current export exists; else None (auto never exports, and tells when a file is stale).
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch":
        return None
    run_dir = Path(run_dir)
    path = default_path(run_dir, "onnx", weights)
    if runtime == "auto":
        if not path.is_file() or not _installed("onnxruntime"):
            return None
        from .checkpoint import read_json

        if AUTO_RUNTIME.get(read_json(run_dir / "model.json")["model"], "onnx") != "onnx":
            return None
    else:
        require("onnxruntime")  # exporting needs onnx and onnxscript too: export_run asks for them when it must
    weights_file = run_dir / "weights" / f"{weights}.safetensors"
    if path.is_file() and weights_file.is_file():
        try:
            predictor = OnnxPredictor(path)
        except ExportError as e:
            if runtime == "onnx":
                raise
            echo(f"{e}: predicting in PyTorch")  # auto: an unreadable file is no current export
            return None
        if predictor.metadata.get("weights_sha256") == sha256_file(weights_file):
            return predictor
        if runtime == "auto":
            echo(f"{path} holds other weights than {weights_file}: predicting in PyTorch ('cnnlab export' renews it)")
            return None
        echo(f"{path} holds other weights than {weights_file}: exporting it again")
    export_run(run_dir, "onnx", path, weights)
    echo(f"exported {path} for onnxruntime")
    return OnnxPredictor(path)
