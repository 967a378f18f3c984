"""How much faster could an AlexNet-BN training step get on this CPU? Its conv and dense layers' own forward +
backward times, each layer timed alone at the step's shapes, against the whole step of ``--recipe challenge``
(bf16 autocast, channels-last, fused AdamW, label smoothing, batch 64), in the same process, back to back.

The layers' sum is a floor for the step: BatchNorm, ReLU, pooling, dropout, the bf16 casts and the optimizer
all come on top of it. ``step_ms / layers_ms`` is then the most any change to the loop could win without
changing the architecture or its arithmetic (issue 21: 96% in 90 minutes needs 1.36x on the 2-core EPYC).

    python benchmarks/alexnet_step_floor.py [--rounds 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.environment import cpu_name, reuse_freed_memory
from cnnlab.run import resolve_config
from cnnlab.train.loop import classification_loss, make_optimizer
from cnnlab.train.runtime import Runtime

RESULTS = Path(__file__).resolve().parent / "results"

# (name, input shape without the batch, weight shape, conv keyword arguments or None for a dense layer, whether
# the input needs a gradient): AlexNet-BN's layers at 227x227 (conv1 sees the images, which need none).
LAYERS = [
    ("conv1 11x11/4, 3->96", (3, 227, 227), (96, 3, 11, 11), dict(stride=4), False),
    ("conv2 5x5, 96->256", (96, 27, 27), (256, 96, 5, 5), dict(padding=2), True),
    ("conv3 3x3, 256->384", (256, 13, 13), (384, 256, 3, 3), dict(padding=1), True),
    ("conv4 3x3, 384->384", (384, 13, 13), (384, 384, 3, 3), dict(padding=1), True),
    ("conv5 3x3, 384->256", (384, 13, 13), (256, 384, 3, 3), dict(padding=1), True),
    ("fc6 9216->4096", (9216,), (4096, 9216), None, True),
    ("fc7 4096->4096", (4096,), (4096, 4096), None, True),
]


def best_seconds(step, repeats: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels on the first call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def layer_seconds(batch: int, shape, weight_shape, conv: dict | None, input_grad: bool, repeats: int) -> float:
    fmt = torch.channels_last if conv is not None else torch.contiguous_format
    x = torch.randn(batch, *shape, dtype=torch.bfloat16).contiguous(memory_format=fmt).requires_grad_(input_grad)
    w = torch.randn(*weight_shape, dtype=torch.bfloat16).contiguous(memory_format=fmt).requires_grad_()

    def step():
        y = F.conv2d(x, w, **conv) if conv is not None else F.linear(x, w)
        y.backward(torch.ones_like(y))

    return best_seconds(step, repeats)


def step_seconds(repeats: int) -> tuple[float, dict]:
    cfg = resolve_config("alexnet_bn", {"recipe": "challenge"})
    runtime = Runtime("cpu", cfg.precision)
    torch.manual_seed(0)
    model = create_model("alexnet_bn", **cfg.model_options).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, cfg)
    x = torch.randn(cfg.batch_size, 3, 227, 227).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (cfg.batch_size,))

    def step():
        with runtime.autocast():
            loss = classification_loss(model(x), y, cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    settings = {"batch_size": cfg.batch_size, "precision": cfg.precision, "optimizer": cfg.optimizer}
    with reuse_freed_memory():  # as fit runs
        times = [best_seconds(step, 1) for _ in range(repeats)]  # one step each: the median, not the luckiest
    return statistics.median(times), settings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="layers, then the step, this many times")
    parser.add_argument("--repeats", type=int, default=4, help="timings per layer (best) and steps (median)")
    parser.add_argument("--out", type=Path, default=RESULTS / "alexnet_step_floor.json")
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        layers = {}
        for name, shape, weight_shape, conv, input_grad in LAYERS:
            layers[name] = layer_seconds(64, shape, weight_shape, conv, input_grad, args.repeats)
        step, settings = step_seconds(2 * args.repeats)
        total = sum(layers.values())
        rounds.append(
            {"layers_ms": {k: round(v * 1e3, 1) for k, v in layers.items()}, "layers_sum_ms": round(total * 1e3, 1)}
            | {"step_ms": round(step * 1e3, 1), "step_images_per_s": round(64 / step, 1)}
            | {"most_a_loop_could_win": round(step / total, 3)}
        )
        print(
            f"round {r + 1}: layers {total * 1e3:.0f} ms, step {step * 1e3:.0f} ms ({64 / step:.1f} img/s): "
            f"the layers are {total / step:.0%} of the step, at most {step / total:.2f}x to win",
            flush=True,
        )
    wins = [r["most_a_loop_could_win"] for r in rounds]
    result = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "step": settings,
        "rounds": rounds,
        "most_a_loop_could_win_range": [min(wins), max(wins)],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"at most {min(wins):.2f}-{max(wins):.2f}x over {len(wins)} rounds; wrote {args.out}")


if __name__ == "__main__":
    main()
