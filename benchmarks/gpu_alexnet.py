"""AlexNet-BN training throughput on a GPU: plain fp32 against bf16 autocast + channels-last + torch.compile.

Prepared for a lent GPU machine (H100/H200); needs CUDA. Synthetic 227x227 batches already on the device,
so the number is the model's. Each variant: warm-up steps (compilation included there, reported apart),
then timed steps with torch.cuda.synchronize around them.

Each run's achieved FLOP/s is its images/s times the training FLOPs of one image (forward + backward, counted
by PyTorch's FlopCounterMode: convolutions and matrix products), as a share of the GPU's dense bf16 peak.
``--from-json`` adds those shares to a saved result without a GPU.

    python benchmarks/gpu_alexnet.py [--batch 256] [--steps 30] [--no-compile] [--from-json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.run import resolve_config
from cnnlab.train.loop import make_optimizer

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; SXM parts unless named (first match
# wins). Every run is measured against the bf16 peak, fp32 ones too: it is the ceiling the fastest setting aims at.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L4": 121.0, "RTX 4090": 165.2}


def bf16_peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in device_name), None)


def training_flops_per_image() -> float:
    """Forward + backward FLOPs of one 227x227 image through alexnet_bn (counted on the CPU, batch 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("alexnet_bn")
    x = torch.randn(2, 3, 227, 227)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    return counter.get_total_flops() / 2


def add_shares(results: dict) -> None:
    flops = training_flops_per_image()
    peak = bf16_peak_tflops(results["device"])
    results["training_gflops_per_image"] = flops / 1e9
    results["bf16_peak_tflops"] = peak
    for r in results["runs"]:
        r["achieved_tflops"] = r["images_per_s"] * flops / 1e12
        r["share_of_bf16_peak"] = r["achieved_tflops"] / peak if peak else None


def measure(batch: int, steps: int, bf16: bool, channels_last: bool, compiled: bool) -> dict:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model("alexnet_bn").to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, resolve_config("alexnet_bn"))
    net = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 227, 227, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "bf16": bf16,
        "channels_last": channels_last,
        "compile": compiled,
        "batch": batch,
        "images_per_s": batch * steps / seconds,
        "warmup_seconds": warmup,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu_alexnet.json"))
    parser.add_argument("--from-json", help="add FLOP/s and peak shares to a saved result (no GPU needed)")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        add_shares(results)
        Path(args.out).write_text(json.dumps(results, indent=2))
        report(results)
        return
    if not torch.cuda.is_available():
        raise SystemExit("gpu_alexnet.py needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    variants = [(False, False, False), (False, True, False), (True, True, False)]
    if not args.no_compile:
        variants.append((True, True, True))
    results = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        # "plain fp32" is PyTorch's default: cuDNN convolutions may use TF32, matrix products do not
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "runs": [],
    }
    for bf16, cl, comp in variants:
        r = measure(args.batch, args.steps, bf16, cl, comp)
        results["runs"].append(r)
        print(
            f"bf16={bf16} channels_last={cl} compile={comp}: {r['images_per_s']:.0f} img/s "
            f"(warm-up {r['warmup_seconds']:.1f} s)",
            flush=True,
        )
    base = results["runs"][0]["images_per_s"]
    for r in results["runs"]:
        r["speedup_vs_fp32"] = r["images_per_s"] / base
    add_shares(results)
    report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    plot(results, out.with_suffix(".png"))
    print(f"best: {max(r['speedup_vs_fp32'] for r in results['runs']):.2f}x plain fp32; wrote {out} and its .png")


def report(results: dict) -> None:
    print(
        f"{results['device']}: {results['training_gflops_per_image']:.2f} GFLOP per training image; "
        f"dense bf16 peak {results['bf16_peak_tflops']} TFLOP/s"
    )
    for r in results["runs"]:
        share = f"{r['share_of_bf16_peak']:.1%} of the bf16 peak" if r["share_of_bf16_peak"] else "peak unknown"
        print(
            f"  {r['images_per_s']:8.0f} img/s  {r['achieved_tflops']:6.1f} TFLOP/s  {share}"
            f"  (bf16={r['bf16']} channels_last={r['channels_last']} compile={r['compile']})"
        )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    names = [
        " + ".join(
            n for n, on in (("bf16", r["bf16"]), ("channels_last", r["channels_last"]), ("compile", r["compile"])) if on
        )
        or "plain fp32"
        for r in runs
    ]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names, [r["images_per_s"] for r in runs], color="#4C72B0")
    for bar, r in zip(bars, runs):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {r['images_per_s']:.0f} ({r['speedup_vs_fp32']:.2f}x)",
            va="center",
        )
    ax.invert_yaxis()
    ax.set_xlabel(f"training images/s (alexnet_bn, 227x227, batch {runs[0]['batch']})")
    ax.set_title(results["device"])
    ax.set_xlim(0, max(r["images_per_s"] for r in runs) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
