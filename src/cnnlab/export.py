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

This module writes files only; ``cnnlab predict RUN --runtime onnx|torch|auto`` reads them back through
onnxruntime in ``inference`` (``OnnxPredictor``, ``onnx_predictor_for_run``, ``AUTO_RUNTIME``).
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .checkpoint import sha256_file, write_through
from .data.loader import InputNorm, Preprocess
from .environment import __version__
from .errors import MissingExtra, RunError, UsageError
from .rundir import MODEL_INFO_KEYS, RunDir

FORMATS = ("onnx", "pt2")
EXTRA_HINT = "pip install 'cnnlab[export]'"

INPUT_CONVENTION = (
    "pixels: float32 (N, C, H, W), raw values 0-255 (uint8 image cast to float; RGB for colour, grey models "
    "one channel like the training images, MNIST's white on black); normalised inside the graph"
)
OUTPUT_CONVENTION = "probabilities: float32 (N, num_classes), softmax inside the graph, order of 'classes'"
# ONNX metadata_props are strings: these keys hold JSON, the others (model, weights, versions...) plain text
JSON_KEYS = ("classes", "input_size", "input_norm", "options", "data")


class ExportError(RunError):
    """A file that cannot be exported to or read as an export; the message names it."""


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(*modules: str) -> None:
    """Import each module or raise ``MissingExtra`` naming the missing ones and the extra that brings them."""
    if missing := [name for name in modules if not importable(name)]:
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


def _trace(export, model: nn.Module, input_norm: InputNorm, input_size, metadata: dict | None) -> tuple:
    """(``export(wrapper, (example,), dynamic_shapes=...)`` of the model in its wrapper, in eval mode, with a
    dynamic batch axis; the file's metadata). The model's train/eval mode is restored afterwards."""
    was_training = model.training
    device = next(model.parameters()).device
    wrapper = RawPixelClassifier(model, input_norm).to(device).eval()
    # Batch 2: an example batch of 1 would let torch.export specialise the batch axis to 1.
    example = torch.randint(0, 256, (2, *input_size), generator=torch.Generator().manual_seed(0)).float().to(device)
    try:
        num_classes = wrapper(example).shape[1]
        program = export(wrapper, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65_536)},))
    finally:
        model.train(was_training)
    return program, {
        "input": INPUT_CONVENTION,
        "output": OUTPUT_CONVENTION,
        "input_size": list(input_size),
        "input_norm": input_norm.to_dict(),
        "classes": [str(i) for i in range(num_classes)],
        "cnnlab_version": __version__,
        "torch_version": torch.__version__,
        **(metadata or {}),
    }


@torch.no_grad()
def export_onnx(model: nn.Module, input_norm: InputNorm, input_size, path, metadata: dict | None = None) -> Path:
    """Write ``model`` as ONNX to ``path``: raw pixels in, probabilities out, dynamic batch (module docstring).

    ``input_size`` is (C, H, W); ``metadata`` (JSON-able values: classes, data, ...) joins the file's
    metadata_props beside the input/output conventions.
    """
    require("onnx", "onnxscript")
    onnx_export = partial(
        torch.onnx.export, dynamo=True, input_names=["pixels"], output_names=["probabilities"], verbose=False
    )
    with _quiet_exporter():
        program, meta = _trace(onnx_export, model, input_norm, input_size, metadata)
    program.model.metadata_props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    program.model.doc_string = f"cnnlab classifier. Input {INPUT_CONVENTION}. Output {OUTPUT_CONVENTION}."
    return write_through(path, lambda tmp: program.save(tmp, external_data=False))


@torch.no_grad()
def export_pt2(model: nn.Module, input_norm: InputNorm, input_size, path, metadata: dict | None = None) -> Path:
    """Write ``model`` as a torch.export archive (.pt2), same graph and conventions as ``export_onnx``;
    the metadata goes into the archive's extra file "cnnlab.json"."""
    program, meta = _trace(torch.export.export, model, input_norm, input_size, metadata)
    extra = {"cnnlab.json": json.dumps(meta, indent=2)}
    return write_through(path, lambda tmp: torch.export.save(program, tmp, extra_files=extra))


# --- a run's export --------------------------------------------------------------------------------------


def default_path(run_dir, fmt: str = "onnx", weights: str = "last") -> Path:
    """RUN/model.onnx for the last weights, RUN/model-best.onnx for the best (likewise .pt2)."""
    return Path(run_dir) / f"model{'' if weights == 'last' else '-' + weights}.{fmt}"


def export_format(fmt: str | None, path) -> str:
    """The format asked for, or the one the file name says; a name that says another format is refused."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if path is None:
        return fmt or "onnx"
    said = Path(path).suffix.lower().removeprefix(".")
    if said not in FORMATS:
        raise UsageError(f"-o {path}: name the file .onnx or .pt2, so that it says what it holds")
    if fmt is not None and fmt != said:
        raise UsageError(
            f"-o {path}: the name says {said} but --format is {fmt}; name it .{fmt} or pass --format {said}"
        )
    return said


def export_run(run_dir, fmt: str | None = None, path=None, weights: str = "last") -> Path:
    """Export a run's trained model (``weights``: last or best) with its classes and image pipeline; ``fmt``
    None: as the file name says (onnx by default). Refused before any work: a path that would overwrite a
    file the run needs, a name that says another format, a folder that does not exist."""
    run = RunDir(run_dir)
    run.require()  # a run directory, before onnx is asked for
    if path is not None:
        run.check_output(path)  # first: over the run's weights, the file name's format is beside the point
    fmt = export_format(fmt, path)
    path = Path(path) if path else default_path(run_dir, fmt, weights)
    if fmt == "onnx":
        require("onnx", "onnxscript")
    model, info = run.load_model(weights)
    metadata = {k: info[k] for k in MODEL_INFO_KEYS}
    metadata.update(weights=weights, weights_sha256=sha256_file(run.weights(weights)))
    export = export_onnx if fmt == "onnx" else export_pt2
    return export(model, model.cnnlab_input_norm, tuple(info["input_size"]), path, metadata)
