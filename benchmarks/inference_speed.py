"""Inference speed, PyTorch eager vs onnxruntime, back to back: images/s at batch 1 and 64 for LeNet-5 and
AlexNet-BN (random weights), and the seconds each takes to load the model, as ``cnnlab predict`` does.

Both sides do what ``cnnlab predict`` does with a batch of uint8 images (N, C, H, W):
(a) PyTorch: the run's model in eval mode, ``softmax(model(Preprocess(norm)(x)))`` under ``no_grad``, fp32,
    NCHW (``predict_files``'s path);
(b) onnxruntime: the file ``cnnlab export`` writes (normalisation and softmax inside), CPU execution provider,
    default graph optimisations, through ``OnnxPredictor.predict_proba``.
Same thread count for both (``--threads``, default PyTorch's). Each measurement is a pair run back to back,
its order alternating from pair to pair; the ratio onnxruntime / PyTorch is taken within each pair, and the
range over the pairs is reported. Loading: PyTorch builds the model and reads its safetensors weights;
onnxruntime hashes the weights file (predict's check that the export is current) and opens an InferenceSession.

Measure on a quiet machine: with other processes on the cores, PyTorch's OpenMP threads wait at every barrier
for a descheduled partner (LeNet-5 at batch 1 took 140 ms a call instead of 0.6 ms on 2 cores under a load
of 8), and the comparison says nothing.

    python benchmarks/inference_speed.py [--pairs 5] [--seconds 2] [--threads N] [--out FILE.json]
    python benchmarks/inference_speed.py --quick      # smoke check: one short pair, results to a temp folder
    python benchmarks/inference_speed.py --plot FILE.json   # redraw the picture

The result sets ``predict --runtime auto`` (``cnnlab.inference.AUTO_RUNTIME``): per model, the faster runtime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab import create_model
from cnnlab.checkpoint import load_weights_into, save_weights, sha256_file
from cnnlab.data.loader import InputNorm, Preprocess
from cnnlab.environment import cpu_name
from cnnlab.export import export_onnx
from cnnlab.inference import OnnxPredictor

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {  # name: (options, input size (C, H, W), normalisation of its training data)
    "lenet5": ({}, (1, 28, 28), InputNorm((0.1307,), (0.3081,))),
    "alexnet_bn": ({"num_classes": 2}, (3, 227, 227), InputNorm((0.488, 0.455, 0.417), (0.262, 0.256, 0.258))),
}
BATCHES = (1, 64)


def images_per_second(predict, batch: int, seconds: float) -> float:
    """Repeat ``predict`` for at least ``seconds`` (at least once); images per second."""
    # Both runtimes share this process: let the other one's worker threads finish their spin-wait (OpenMP's,
    # onnxruntime's) before the clock starts, so that they do not take cores from this timing.
    time.sleep(0.3)
    n, start = 0, time.perf_counter()
    while True:
        predict()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n * batch / elapsed


def measure_model(name: str, folder: Path, pairs: int, seconds: float, threads: int) -> dict:
    options, size, norm = MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, **options).eval()
    weights, onnx_path = folder / f"{name}.safetensors", folder / f"{name}.onnx"
    save_weights(weights, model)
    export_onnx(model, norm, size, onnx_path)

    def load_torch():
        m = create_model(name, **options)
        load_weights_into(m, weights)
        return m.eval()

    def load_onnx():
        return OnnxPredictor(onnx_path, threads=threads)

    def load_onnx_as_predict():  # predict also checks that the export holds the run's current weights
        sha256_file(weights)
        return load_onnx()

    result = {"input_size": list(size), "load_seconds": {"torch": [], "onnxruntime": []}, "batches": {}}
    for i in range(pairs):  # loading, back to back, alternating order
        loaders = (("torch", load_torch), ("onnxruntime", load_onnx_as_predict))
        for runtime, load in loaders[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            load()
            result["load_seconds"][runtime].append(time.perf_counter() - start)

    predictor = load_onnx()
    for batch in BATCHES:
        result["batches"][str(batch)] = measure_batch(name, model, norm, predictor, size, batch, pairs, seconds)
    loads = result["load_seconds"]
    print(
        f"{name} load: PyTorch {statistics.median(loads['torch']):.3f} s, "
        f"onnxruntime {statistics.median(loads['onnxruntime']):.3f} s",
        flush=True,
    )
    result["faster"] = faster(result)
    return result


def measure_batch(name, model, norm, predictor, size, batch: int, pairs: int, seconds: float) -> dict:
    x = torch.randint(0, 256, (batch, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
    x_np = x.numpy()
    pre = Preprocess(norm, "cpu", channels_last=False)

    @torch.no_grad()
    def torch_predict():
        return torch.softmax(model(pre(x)), dim=1)

    def onnx_predict():
        return predictor.predict_proba(x_np, batch_size=batch)

    diff = float(np.abs(torch_predict().numpy() - onnx_predict()).max())
    for _ in range(2):  # warm-up: oneDNN and onnxruntime pick and cache their kernels on the first calls
        torch_predict(), onnx_predict()
    runs = {"torch": [], "onnxruntime": []}
    for i in range(pairs):
        for runtime, predict in (("torch", torch_predict), ("onnxruntime", onnx_predict))[:: 1 if i % 2 == 0 else -1]:
            runs[runtime].append(images_per_second(predict, batch, seconds))
    ratios = [o / t for o, t in zip(runs["onnxruntime"], runs["torch"])]
    print(
        f"{name} batch {batch:>2}: PyTorch {statistics.median(runs['torch']):9.1f} img/s, onnxruntime "
        f"{statistics.median(runs['onnxruntime']):9.1f} img/s; onnxruntime/PyTorch {min(ratios):.2f}-"
        f"{max(ratios):.2f}x over {pairs} pair(s) (max |dp| {diff:.1e})",
        flush=True,
    )
    return {
        "torch_images_per_s": runs["torch"],
        "onnxruntime_images_per_s": runs["onnxruntime"],
        "ratio_onnxruntime_over_torch": ratios,
        "max_abs_probability_difference": diff,
    }


def faster(result: dict) -> str:
    """'onnxruntime' or 'torch' where one wins every pair at every batch size, else 'mixed'."""
    ratios = [r for b in result["batches"].values() for r in b["ratio_onnxruntime_over_torch"]]
    if min(ratios) > 1:
        return "onnxruntime"
    if max(ratios) < 1:
        return "torch"
    return "mixed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="back-to-back pairs per measurement (at least 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per timing")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for both (0: PyTorch's choice)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="smoke check: one short pair, results to a temp folder")
    parser.add_argument("--out", type=Path, help="default: results/inference_speed.json")
    parser.add_argument("--plot", type=Path, metavar="RESULT.json", help="only redraw the picture of this result")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        return
    if args.quick:
        args.pairs, args.seconds = 1, 0.0
        args.out = args.out or Path(tempfile.mkdtemp(prefix="cnnlab-inference-speed-")) / "inference_speed.json"
    elif args.pairs < 3:
        parser.error("--pairs must be at least 3 for a measurement (--quick for a smoke check)")
    args.out = args.out or RESULTS / "inference_speed.json"
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    import onnxruntime

    result = {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu": cpu_name(),
        "threads": threads,
        "pairs": args.pairs,
        "seconds_per_timing": args.seconds,
        "quick": args.quick,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="cnnlab-inference-") as folder:
        for name in args.models:
            result["models"][name] = measure_model(name, Path(folder), args.pairs, args.seconds, threads)
    for name, r in result["models"].items():
        print(f"{name}: faster at both batch sizes in every pair: {r['faster']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and its .png")


def plot(result: dict, path: Path) -> None:
    """Images/s per model and batch size, PyTorch vs onnxruntime (median over the pairs, the range as a bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], models.items()):
        batches = list(r["batches"])
        for offset, key, colour, label in (
            (-0.2, "torch_images_per_s", "#999999", "PyTorch eager"),
            (0.2, "onnxruntime_images_per_s", "#4C72B0", "onnxruntime"),
        ):
            values = [r["batches"][b][key] for b in batches]
            medians = [statistics.median(v) for v in values]
            spread = [[m - min(v) for m, v in zip(medians, values)], [max(v) - m for m, v in zip(medians, values)]]
            xs = [i + offset for i in range(len(batches))]
            ax.bar(xs, medians, width=0.38, color=colour, label=label, yerr=spread, capsize=3)
            for x, m in zip(xs, medians):
                ax.text(x, m, f"{m:,.0f}", ha="center", va="bottom", fontsize=8)
        ratios = [r["batches"][b]["ratio_onnxruntime_over_torch"] for b in batches]
        ax.set_xticks(
            range(len(batches)),
            [f"batch {b}\nonnxruntime/PyTorch {min(q):.2f}-{max(q):.2f}x" for b, q in zip(batches, ratios)],
            fontsize=8,
        )
        ax.set_yscale("log")
        ax.set_ylabel("images/s (log)")
        ax.set_title(f"{name} {'x'.join(map(str, r['input_size'][1:]))}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"inference, PyTorch {result['torch']} vs onnxruntime {result['onnxruntime']}: {result['cpu']}, "
        f"{result['threads']} threads, {result['pairs']} pair(s){' (quick)' if result.get('quick') else ''}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
