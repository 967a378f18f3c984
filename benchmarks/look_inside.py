"""The look-inside pictures of a trained run, for benchmarks/results/: its first layer's filters (and deeper ones
with --layers), the feature maps of its first test image, and Grad-CAM + occlusion on test images it got right
and on its most confident mistakes (from the run's predictions.csv).

    python benchmarks/look_inside.py RUN --name lenet5_mnist [--layers conv1,conv2] [--right 4] [--wrong 4]
    python benchmarks/look_inside.py runs/alexnet_bn-dvc --name alexnet_bn_dogs_vs_cats

writes benchmarks/results/NAME_filters[_convN].png, NAME_activations.png and NAME_explain.png. The test split is
opened as `cnnlab evaluate RUN` opens it (MNIST through CNNLAB_DATA, an image folder through the run's config).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from cnnlab import explain
from cnnlab.data.source import open_source
from cnnlab.inference import load_run, run_config

RESULTS = Path(__file__).resolve().parent / "results"


def right_and_wrong(run_dir: Path, right: int, wrong: int) -> list[int]:
    """Positions in the test split: the first ``right`` images predicted correctly, then the ``wrong`` most
    confident mistakes."""
    with open(run_dir / "predictions.csv", newline="") as f:
        reader = csv.DictReader(f)
        # the first view group is the report's: "predicted", or "predicted_centre_crop" before "..._10-crop"
        predicted, probability = (next(c for c in reader.fieldnames if c.startswith(k)) for k in ("pred", "prob"))
        rows = list(reader)
    correct = [int(r["position"]) for r in rows if r["label"] == r[predicted]][:right]
    mistakes = sorted((r for r in rows if r["label"] != r[predicted]), key=lambda r: -float(r[probability]))
    return correct + [int(r["position"]) for r in mistakes[:wrong]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True, help="file name prefix under benchmarks/results")
    parser.add_argument("--layers", default="conv1", help="comma-separated convolutions, e.g. conv1,conv2")
    parser.add_argument("--right", type=int, default=4)
    parser.add_argument("--wrong", type=int, default=4)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    model, info = load_run(args.run_dir)
    title = f"{info['model']}: {args.run_dir.name}"
    written = []
    for layer in args.layers.split(","):
        suffix = "" if layer == "conv1" else f"_{layer}"
        written.append(args.out_dir / f"{args.name}_filters{suffix}.png")
        written[-1].write_bytes(explain.png_bytes(explain.plot_filters(model, layer, title)))

    source = open_source(run_config(args.run_dir), allow_sample=False, echo=lambda message: None)
    positions = right_and_wrong(args.run_dir, args.right, args.wrong)
    images = source.images("test", torch.tensor(positions))
    labels = source.labels("test")[positions].tolist()
    first = images[0]
    label = info["classes"][labels[0]]
    maps = explain.feature_maps(model, first)
    written.append(args.out_dir / f"{args.name}_activations.png")
    figure = explain.plot_feature_maps(first, maps, title=f"{title}: test image {positions[0]} ({label})")
    written[-1].write_bytes(explain.png_bytes(figure))

    start = time.perf_counter()
    explanations = explain.explain(model, images)
    seconds = time.perf_counter() - start
    written.append(args.out_dir / f"{args.name}_explain.png")
    heading = f"{title}: {args.right} right, then the {args.wrong} most confident mistakes"
    figure = explain.plot_explanations(explanations, info["classes"], labels, title=heading)
    written[-1].write_bytes(explain.png_bytes(figure))
    print(f"Grad-CAM + occlusion of {len(images)} images: {seconds:.1f} s")
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
