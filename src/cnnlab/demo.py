"""``cnnlab demo RUN``: a local web page to try a trained run, made with Gradio (the convention for a model demo).

An MNIST-style run (grey images) gets a canvas to draw a digit on, an image-folder run a place to drop a photo.
After each stroke or photo the page shows the top classes with their probabilities, the Grad-CAM overlay
(where the network looked) and the first convolution's feature maps. A drawing or photo is saved by Gradio as a
PNG file and read as ``cnnlab predict`` reads a file (the run's data description: resize, inversion of a dark
digit on a light canvas, centre crop). Probabilities come from the run's ONNX export in onnxruntime when a
current one exists (``cnnlab export RUN``), else from PyTorch; the maps need PyTorch's gradients.

Gradio is an extra: ``pip install 'cnnlab[demo]'``. The page is served on this machine only (127.0.0.1) unless
``--host`` says otherwise; Gradio's usage statistics are switched off.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps

from .data.source import read_file
from .errors import MissingExtra, UsageError
from .explain import explain, feature_maps, feature_mosaic, find_conv, overlay
from .inference import load_run, onnx_predictor_for_run

SHOWN_SIDE = 280  # the overlay and the canvas: MNIST's 28 pixels ten times
# Gradio's canvas opens with no tool chosen ("select the draw tool to start"): the page picks the brush itself
SELECT_BRUSH = """() => {
  const pick = setInterval(() => {
    const brush = document.querySelector('#source button[aria-label="Brush"]');
    const canvas = document.querySelector('#source canvas');
    if (brush && canvas && canvas.getBoundingClientRect().width > 0 && document.readyState === 'complete') {
      clearInterval(pick);
      setTimeout(() => brush.click(), 500);
    }
  }, 100);
}"""


class RunDemo:
    """What the page computes, without the page: the answer for one image file."""

    def __init__(self, run_dir, weights: str = "last", top: int = 5, echo=print):
        self.run_dir = Path(run_dir)
        self.model, self.info = load_run(run_dir, weights)
        self.predictor = onnx_predictor_for_run(run_dir, weights, "auto", echo)  # None: PyTorch
        self.read = read_file(self.info["data"])
        self.top = top
        self.first_conv = find_conv(self.model)[0]

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.predictor is not None else "PyTorch"

    @property
    def draws(self) -> bool:
        """Grey images (MNIST): a canvas to draw on; colour ones: a photo to drop."""
        return self.info["input_size"][0] == 1

    def answer(self, path) -> tuple[dict[str, float], np.ndarray, np.ndarray] | None:
        """({class: probability} of the top classes, Grad-CAM overlay, first-layer feature maps), both pictures
        RGB uint8; None for a blank image (a canvas not drawn on yet, or cleared)."""
        image = self.read(path)
        if image.min() == image.max():
            return None
        (explained,) = explain(self.model, image[None], ("gradcam",))
        probabilities = explained.probabilities
        if self.predictor is not None:
            probabilities = torch.from_numpy(self.predictor.predict_proba(image[None].float().numpy())[0])
        values, indices = probabilities.topk(min(self.top, len(probabilities)))
        ranked = {self.info["classes"][i]: float(v) for v, i in zip(values, indices.tolist())}
        heat = _enlarge(overlay(image, explained.maps["gradcam"]), SHOWN_SIDE)
        (first,) = feature_maps(self.model, image, only={self.first_conv})
        grid = feature_mosaic(first.values)
        maps = colormaps["viridis"].with_extremes(bad="white")(grid)[..., :3]  # bad: the NaN between the maps
        return ranked, heat, _enlarge(maps, 2 * SHOWN_SIDE)


def build_app(demo: RunDemo):
    """The Gradio page (a ``gradio.Blocks``) for ``demo``'s run."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage statistics sent from a lesson's page
    try:
        import gradio as gr
    except ImportError:
        raise MissingExtra("cnnlab demo needs Gradio: pip install 'cnnlab[demo]'") from None
    info = demo.info
    name = f"{info['model']} · {demo.run_dir.name}"
    with gr.Blocks(title=f"cnnlab demo: {name}") as app:
        gr.Markdown(
            f"## {name}\n{len(info['classes'])} classes; probabilities from {demo.runtime}, Grad-CAM from PyTorch. "
            + ("Draw a digit: the answer follows each stroke." if demo.draws else "Drop a photo.")
        )
        # The canvas spans the page's width: in a narrower column, Gradio's canvas slides out of place when the
        # brush is picked before the layout settles (seen in chromium under load)
        if demo.draws:
            source = gr.Sketchpad(
                type="filepath",
                format="png",
                canvas_size=(SHOWN_SIDE, SHOWN_SIDE),
                brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                label="draw a digit",
                elem_id="source",
            )
        else:
            source = gr.Image(type="filepath", sources=["upload", "clipboard"], label="a photo", elem_id="source")
        with gr.Row():
            label = gr.Label(num_top_classes=demo.top, label="prediction", elem_id="prediction")
            heat = gr.Image(label="Grad-CAM: where it looked", elem_id="gradcam", interactive=False)
        maps = gr.Image(label=f"feature maps of conv1 ({demo.first_conv})", elem_id="feature-maps", interactive=False)

        def update(value):
            path = value.get("composite") if isinstance(value, dict) else value  # the canvas: layers and composite
            answer = demo.answer(path) if path else None
            return answer if answer is not None else (None, None, None)

        source.change(update, source, [label, heat, maps], trigger_mode="always_last", show_progress="hidden")
    return app


def serve(run_dir, weights: str = "last", top: int = 5, host: str = "127.0.0.1", port: int | None = None, **launch):
    """Build the page and serve it until Ctrl-C; returns (the ``gradio.Blocks``, its local URL). ``launch``: more
    of Gradio's ``launch`` arguments (``prevent_thread_lock=True`` serves in the background: ``blocks.close()``
    stops it)."""
    demo = RunDemo(run_dir, weights, top)
    blocks = build_app(demo)
    try:
        _, url, _ = blocks.launch(server_name=host, server_port=port, js=SELECT_BRUSH if demo.draws else None, **launch)
    except OSError as e:  # Gradio's words for these name its own knobs (GRADIO_SERVER_PORT, launch())
        if "Cannot find empty port" not in str(e):
            raise
        where = f"--host {host}" + (f" --port {port}" if port else "")
        raise UsageError(f"{where}: cannot serve there; the port is in use or the host is not this machine's") from e
    return blocks, url


def _enlarge(picture: np.ndarray, side: int) -> np.ndarray:
    """An RGB float picture in [0, 1] as uint8, each pixel repeated so that its longer side is about ``side``
    (a browser would blur a 28-pixel picture it scales up)."""
    factor = max(1, side // max(picture.shape[:2]))
    enlarged = picture.repeat(factor, axis=0).repeat(factor, axis=1)
    return (np.clip(enlarged, 0, 1) * 255).round().astype(np.uint8)
