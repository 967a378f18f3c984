"""Look inside a trained network: its filters, its feature maps, and where it looks for a prediction.

Filters: a convolution's kernels as a grid of small images, each kernel scaled to its own range (its minimum
black, its maximum white), as Figure 3 of the AlexNet paper shows the 96 kernels of the first layer. A layer
that reads RGB or grey images shows one tile per kernel, in colour or grey; a deeper layer shows one row per
kernel and one tile per input channel.

Feature maps: what each convolution and pooling layer outputs for one image, named as ``cnnlab summary`` names
the layers (PyTorch's module names, e.g. ``features.0``).

Where it looks: class activation maps from Captum, PyTorch's own interpretability library. Grad-CAM (Selvaraju
et al., 2017) weighs the feature maps of the last convolution block by the mean gradient of the class score;
occlusion (Zeiler & Fergus, 2014) slides a patch of the training set's mean colour over the image and records
how much the class score drops. The first is one backward pass and coarse (the block's resolution); the second
needs no gradient, sees the input's resolution and costs one forward pass per patch position.

Every picture is a matplotlib Figure, or an RGB array where a page shows it directly (the demo); ``png_bytes``
turns a figure into the PNG that a report page embeds. The functions ending in ``_png`` take a trained run's
model and info (``cnnlab.inference.load_run``).
"""

from __future__ import annotations

import io
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from .data.loader import Preprocess
from .data.source import read_file
from .errors import UsageError

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d)
# Layers that map each value to one value: Grad-CAM looks at the last convolution block's output through them
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.BatchNorm2d)
METHODS = ("gradcam", "occlusion")
METHOD_TITLES = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}
GRID_COLUMNS = 16  # AlexNet's 96 first-layer kernels: 6 rows of 16, as in the paper's figure


# --- filters -------------------------------------------------------------------------------------------


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The model's 2-D convolutions by module name, in the order the model defines them."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def find_conv(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """(name, convolution): the first one, or ``layer`` by module name (``features.3``) or as ``conv2``."""
    convs = conv_layers(model)
    if not convs:
        raise UsageError(f"{type(model).__name__} has no 2-D convolution to show")
    if layer is None:
        return next(iter(convs.items()))
    aliases = {f"conv{i + 1}": name for i, name in enumerate(convs)}
    name = layer if layer in convs else aliases.get(layer)
    if name in convs:
        return name, convs[name]
    choices = ", ".join(alias if alias == name else f"{alias} ({name})" for alias, name in aliases.items())
    raise UsageError(f"--layer {layer!r}: no convolution of that name; this model has {choices}")


def scale_each(kernels: torch.Tensor) -> torch.Tensor:
    """Each kernel (first dimension) mapped to [0, 1] by its own minimum and maximum; a constant one to 0.5."""
    flat = kernels.detach().float().reshape(len(kernels), -1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.full_like(flat, 0.5))
    return scaled.reshape(kernels.shape)


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1, background: float = 1.0) -> np.ndarray:
    """(N, h, w, C) tiles -> one (rows*(h+gap)+gap, columns*(w+gap)+gap, C) image, row by row, ``gap`` pixels
    of ``background`` around each tile."""
    n, h, w, c = tiles.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, c), background, dtype=np.float32)
    for i, tile in enumerate(tiles):
        top, left = gap + (i // columns) * (h + gap), gap + (i % columns) * (w + gap)
        out[top : top + h, left : left + w] = tile
    return out


def filter_grid(weight: torch.Tensor, reads_image: bool = True) -> np.ndarray:
    """A convolution's weight (out, in, kh, kw) as an image in [0, 1], each kernel scaled to its own range.

    A layer that reads the image (``reads_image``) with one input channel (grey) or three (RGB): a tile per
    kernel, ``GRID_COLUMNS`` to a row, (H, W, 1) or (H, W, 3). A deeper layer, whatever its number of input
    channels (three feature maps are not colours): one row per kernel, one tile per input channel, (H, W, 1).
    """
    out_channels, in_channels = weight.shape[:2]
    scaled = scale_each(weight.detach().cpu()).numpy()
    if reads_image and in_channels in (1, 3):
        return mosaic(scaled.transpose(0, 2, 3, 1), min(out_channels, GRID_COLUMNS))
    per_channel = scaled.reshape(out_channels * in_channels, 1, *scaled.shape[2:]).transpose(0, 2, 3, 1)
    return mosaic(per_channel, in_channels)


def plot_filters(model: nn.Module, layer: str | None = None, title: str = "") -> Figure:
    """The kernels of ``layer`` (the first convolution by default) as ``filter_grid`` lays them out, pixel-sharp:
    each pixel enlarged so that the longer side is about 900 pixels."""
    name, conv = find_conv(model, layer)
    convs = list(conv_layers(model))
    reads_image = name == convs[0]
    grid = filter_grid(conv.weight, reads_image)
    out_channels, in_channels, kh, kw = conv.weight.shape
    h, w = grid.shape[:2]
    scale = max(1, min(40, 900 // max(h, w)))
    fig = Figure(figsize=(max(3.5, w * scale / 100), h * scale / 100 + 0.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if not (reads_image and in_channels in (1, 3)):
        ax.set(xlabel=f"input channel (1-{in_channels})", ylabel=f"kernel (1-{out_channels})")
    alias = f"conv{convs.index(name) + 1}"
    heading = f"{alias} ({name}): {out_channels} kernels {kh}x{kw}x{in_channels}\neach scaled to its own range"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    return fig


# --- feature maps --------------------------------------------------------------------------------------


@dataclass
class FeatureMap:
    name: str  # the module's name, as in the model's summary
    kind: str  # its class name: Conv2d, MaxPool2d...
    values: torch.Tensor  # (C, H, W) for the one image


def prepare(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images -> the normalised float input the model was trained on."""
    norm = getattr(model, "cnnlab_input_norm", None)
    if norm is None:
        raise UsageError("the model has no input normalisation: train it with cnnlab.fit or load it with load_run")
    return Preprocess(norm, next(model.parameters()).device, channels_last=False)(images)


class _AllCaptured(Exception):
    """Stops a forward pass once every layer asked for has given its output."""


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, only: set[str] | None = None) -> list[FeatureMap]:
    """The output of every convolution and pooling layer (or of those named in ``only``) for one uint8 (C, H, W)
    image, in forward order."""
    maps: list[FeatureMap] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, *POOLING)) and (only is None or name in only):

            def keep(mod, args, output, name=name):
                # a copy: an in-place ReLU after the convolution would change the tensor afterwards
                maps.append(FeatureMap(name, type(mod).__name__, output[0].detach().float().cpu().clone()))
                if only is not None and len(maps) == len(only):
                    raise _AllCaptured  # the rest of the network is not needed (the demo's first layer)

            hooks.append(module.register_forward_hook(keep))
    try:
        with suppress(_AllCaptured):
            model(prepare(model, image[None]))
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def feature_mosaic(values: torch.Tensor, max_channels: int = 64, columns: int = GRID_COLUMNS) -> np.ndarray:
    """One layer's (C, H, W) maps as a (H', W') grid in [0, 1], all on the layer's own range, so that a quiet
    channel looks quiet; the first ``max_channels`` channels; NaN between the maps."""
    shown = values[:max_channels].detach().float().cpu()
    low, high = float(shown.min()), float(shown.max())
    scaled = (shown - low) / (high - low) if high > low else torch.zeros_like(shown)
    return mosaic(scaled.numpy()[..., None], min(len(shown), columns), background=np.nan)[..., 0]  # NaN: white


def plot_feature_maps(image: torch.Tensor, maps: list[FeatureMap], max_channels: int = 64, title: str = "") -> Figure:
    """The input, then a panel per layer: its channels side by side, titled with its name, kind and shape."""
    panels = [(_as_rgb(image), f"input {'x'.join(map(str, image.shape))}")]
    for m in maps:
        c, h, w = m.values.shape
        shown = f" (first {max_channels} of {c} channels)" if c > max_channels else ""
        panels.append((feature_mosaic(m.values, max_channels), f"{m.name} ({m.kind}): {c}x{h}x{w}{shown}"))
    width = 8.0
    heights = [width * p.shape[0] / p.shape[1] if p.ndim == 2 else 1.6 for p, _ in panels]
    fig = Figure(figsize=(width, sum(heights) + 0.4 * len(panels) + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, (picture, caption) in zip(axes, panels):
        ax.imshow(picture, cmap="viridis" if picture.ndim == 2 else None, interpolation="nearest")
        ax.set_title(caption, fontsize=9, loc="left")
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --- where it looks: class activation maps -------------------------------------------------------------


def cam_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """Grad-CAM's layer: the output of the last convolution block, i.e. the last convolution and the
    elementwise layers right after it (activation, BatchNorm), before it is pooled: LeNet-5's second tanh
    (16x10x10), AlexNet-BN's last BatchNorm (256x13x13)."""
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError(f"{type(model).__name__} has no 2-D convolution: Grad-CAM needs one")
    i = convs[-1]
    while i + 1 < len(leaves) and isinstance(leaves[i + 1][1], ELEMENTWISE):
        i += 1
    return leaves[i]


def _captum():
    # imported when a map is asked for: it takes 1.8 s, which `cnnlab filters` and `activations` need not wait
    import captum.attr

    return captum.attr


def grad_cam(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Captum's LayerGradCam of normalised input ``x`` (N, C, H, W) for class ``targets``: (N, h, w) at the
    layer's resolution, ReLU applied as in the paper (only what speaks for the class)."""
    with _no_inplace(model):
        cam = _captum().LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    return cam[:, 0].detach()


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """(window, stride): a patch a seventh of the shorter side (4 pixels on MNIST, 32 on AlexNet's 227),
    moved by half its size."""
    window = max(3, round(min(height, width) / 7))
    return window, max(1, window // 2)


def occlusion(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Captum's Occlusion: how much the class score drops when a patch is set to the training set's mean
    colour (0 after normalisation), summed over colour channels: (N, H, W); positive means evidence for."""
    channels, height, width = x.shape[1:]
    window, stride = occlusion_window(height, width)
    attr = _captum().Occlusion(model)
    with torch.no_grad():
        maps = attr.attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=0.0,
            target=targets,
            perturbations_per_eval=64,
        )
    return maps.sum(1)


def check_methods(methods: tuple[str, ...]) -> None:
    if unknown := [m for m in methods if m not in METHODS]:
        raise UsageError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")


@dataclass
class Explanation:
    image: torch.Tensor  # uint8 (C, H, W), as the model saw it
    probabilities: torch.Tensor  # (classes,)
    target: int  # the class explained: the prediction unless another was asked for
    raw: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> map at its own resolution
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> (H, W) map at the image's size

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())


def explain(
    model: nn.Module,
    images: torch.Tensor,
    methods: tuple[str, ...] = METHODS,
    targets: list[int] | None = None,
    layer: str | None = None,
) -> list[Explanation]:
    """Class activation maps of uint8 (N, C, H, W) images for their predicted classes (or ``targets``).
    ``layer``: Grad-CAM's layer by module name (default ``cam_layer``)."""
    check_methods(methods)
    x = prepare(model, images)
    with torch.no_grad():
        probabilities = torch.softmax(model(x).float(), dim=1).cpu()
    chosen = probabilities.argmax(1) if targets is None else torch.as_tensor(targets)
    explanations = [Explanation(img, p, int(t)) for img, p, t in zip(images, probabilities, chosen)]
    for method in methods:
        if method == "gradcam":
            raw = grad_cam(model, x, chosen, _named_module(model, layer) if layer else cam_layer(model)[1])
            if raw.dim() != 3:  # a dense layer's output: no place in the image to point at
                convs = ", ".join(conv_layers(model))
                raise UsageError(
                    f"--layer {layer}: Grad-CAM needs a layer of feature maps, before the flatten ({convs})"
                )
        else:
            raw = occlusion(model, x, chosen)
        upsampled = _captum().LayerAttribution.interpolate(raw[:, None], tuple(x.shape[2:]), "bilinear")[:, 0]
        for e, r, m in zip(explanations, raw.cpu(), upsampled.cpu()):
            e.raw[method], e.maps[method] = r, m
    return explanations


def overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """An RGB (H, W, 3) picture in [0, 1]: the image with the positive part of ``heat`` in the jet colour map
    (blue: none, red: the map's maximum) over it."""
    base = _as_rgb(image)
    positive = heat.detach().clamp_min(0).float().cpu()
    peak = float(positive.max())
    scaled = (positive / peak).numpy() if peak > 0 else np.zeros(positive.shape, np.float32)
    colour = colormaps["jet"](scaled)[..., :3]
    return ((1 - alpha) * base + alpha * colour).astype(np.float32)


def plot_explanations(
    explanations: list[Explanation], classes: list[str], labels: list[int] | None = None, names=None, title: str = ""
) -> Figure:
    """A row per image: the image with its prediction (and true class, red where they differ), then an
    overlay per method."""
    methods = list(explanations[0].maps) if explanations else []
    rows, columns = len(explanations), 1 + len(methods)
    fig = Figure(figsize=(2.3 * columns, 2.5 * rows + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(max(rows, 1), columns, squeeze=False)
    for r, e in enumerate(explanations):
        caption = f"{classes[e.predicted]} {float(e.probabilities[e.predicted]):.1%}"
        wrong = labels is not None and labels[r] != e.predicted
        if labels is not None:
            caption = f"true {classes[labels[r]]}\npredicted {caption}"
        if names is not None:
            caption = f"{names[r]}\n{caption}"
        axes[r, 0].imshow(_as_rgb(e.image), interpolation="nearest")
        axes[r, 0].set_title(caption, fontsize=8, color="crimson" if wrong else "black")
        for c, method in enumerate(methods, start=1):
            axes[r, c].imshow(overlay(e.image, e.maps[method]), interpolation="nearest")
            explained = "" if e.target == e.predicted else f" for {classes[e.target]}"
            axes[r, c].set_title(f"{METHOD_TITLES[method]}{explained}", fontsize=8)
        for ax in axes[r]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --- a trained run: what the commands and the report page call ------------------------------------------
# ``model, info = cnnlab.inference.load_run(RUN)``; this module imports nothing above the data layer, so that the
# report page (evaluation/) and the run (run.py, inference.py) can use it.


def read_images(info: dict, paths) -> torch.Tensor:
    """Image files as uint8 (N, C, H, W), each prepared as the run's training prepared its images."""
    read = read_file(info["data"])  # it names a missing file, a folder, a file that is no image
    return torch.stack([read(p) for p in paths])


def filters_png(model: nn.Module, info: dict, layer: str | None = None, title: str = "") -> bytes:
    return png_bytes(plot_filters(model, layer, title=title or info["model"]))


def activations_png(model: nn.Module, info: dict, image_path, max_channels: int = 64) -> bytes:
    image = read_images(info, [image_path])[0]
    title = f"{info['model']} on {Path(image_path).name}"
    return png_bytes(plot_feature_maps(image, feature_maps(model, image), max_channels, title))


def explain_files(
    model: nn.Module,
    info: dict,
    image_paths,
    methods: tuple[str, ...] = METHODS,
    target: str | None = None,
    layer: str | None = None,
) -> list[Explanation]:
    """The maps of image files for their predicted classes, or all for the class named ``target``."""
    check_methods(methods)
    targets = None
    if target is not None:
        if target not in info["classes"]:
            raise UsageError(f"--class {target!r} is not one of the run's classes: {', '.join(info['classes'])}")
        targets = [info["classes"].index(target)] * len(image_paths)
    return explain(model, read_images(info, image_paths), methods, targets, layer)


def explain_png(model: nn.Module, info: dict, image_paths, methods: tuple[str, ...] = METHODS, **options) -> bytes:
    """Grad-CAM and occlusion overlays of image files, one row per file (``options``: see explain_files)."""
    explanations = explain_files(model, info, image_paths, methods, **options)
    names = [Path(p).name for p in image_paths]
    return png_bytes(plot_explanations(explanations, info["classes"], names=names, title=info["model"]))


def mistakes_png(model: nn.Module, classes, images: torch.Tensor, labels, methods=METHODS) -> bytes:
    """The report page's worst mistakes (uint8 images, true labels) with where the network looked."""
    return png_bytes(plot_explanations(explain(model, images, methods), classes, [int(y) for y in labels]))


# --- helpers -------------------------------------------------------------------------------------------


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _as_rgb(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> float (H, W, 3) in [0, 1]: RGB as it is, any other number of channels as grey."""
    array = image.detach().cpu().numpy().astype(np.float32) / 255
    if array.shape[0] != 3:
        array = np.repeat(array.mean(0, keepdims=True), 3, axis=0)
    return array.transpose(1, 2, 0)


def _named_module(model: nn.Module, name: str) -> nn.Module:
    """Any layer by its module name (``features.4``), or a convolution as ``convN``."""
    modules = dict(model.named_modules())
    return modules[name] if name and name in modules else find_conv(model, name)[1]


@contextmanager
def _no_inplace(model: nn.Module):
    """In-place activations off while Captum hooks the model (its backward hooks refuse a tensor changed in
    place, e.g. AlexNet's ReLU(inplace=True)); restored afterwards."""
    modules = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in modules:
        m.inplace = False
    try:
        yield
    finally:
        for m in modules:
            m.inplace = True
