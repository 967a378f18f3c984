"""AlexNet-BN training throughput on a GPU: plain fp32 against bf16 autocast + channels-last + torch.compile.

Prepared for a lent GPU machine (H100/H200); needs CUDA. Synthetic 227x227 batches already on the device,
so the number is the model's. Each variant: warm-up steps (compilation included there, reported apart),
then timed steps with torch.cuda.synchronize around them.

    python benchmarks/gpu_alexnet.py [--batch 256] [--steps 30] [--no-compile]
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
    args = parser.parse_args()
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    plot(results, out.with_suffix(".png"))
    print(f"best: {max(r['speedup_vs_fp32'] for r in results['runs']):.2f}x plain fp32; wrote {out} and its .png")


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
