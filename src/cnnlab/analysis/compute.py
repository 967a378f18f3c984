"""Training compute, counted the way OpenAI's "AI and Compute" (Amodei & Hernandez, 2018) counts it.

Forward FLOPs are 2 per multiply-accumulate of the convolutions and dense layers; training costs about
3x the forward pass (forward, plus a backward pass of about twice its cost); a petaflop/s-day is
1e15 FLOP/s for a day, 8.64e19 FLOPs. By operations, OpenAI puts AlexNet's training (90 epochs of 1.2M
images) at 0.0054 pfs-days (0.0058 from GPU time).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: nothing global, no display
from torch import nn

from ..summary import summary

PFS_DAY = 1e15 * 86_400
TRAIN_TO_FORWARD = 3

# Landmark training runs, petaflop/s-days. AlexNet: the figure given in the text of Amodei & Hernandez,
# "AI and Compute" (OpenAI, 2018); the others are read off that article's chart (log scale, so good to
# about a factor of 1.5). LeNet-5 (first era) is computed here: 20 passes over 60,000 images, as
# LeCun et al. (1998) trained it, at cnnlab's count of 0.83 MFLOP per forward pass.
LANDMARKS = [
    ("AlexNet", 2012.7, 0.0058),
    ("Dropout", 2012.5, 0.0026),
    ("Visualizing & Understanding ConvNets", 2013.9, 0.011),
    ("DQN", 2013.95, 0.00011),
    ("GoogLeNet", 2014.7, 0.018),
    ("VGG", 2014.7, 0.12),
    ("Seq2Seq", 2014.7, 0.12),
    ("DeepSpeech2", 2015.9, 0.26),
    ("ResNets", 2015.95, 0.12),
    ("Xception", 2016.8, 4.5),
    ("Neural Machine Translation", 2016.7, 79),
    ("Neural Architecture Search", 2016.85, 3150),
    ("AlphaZero", 2017.9, 450),
    ("AlphaGo Zero", 2017.8, 1860),
]
# Labels placed by hand (offset in points; to the left when negative) where the alternating right-above and
# right-below would meet a neighbour's point or label
LABEL_OFFSETS = {
    "AlexNet": (-6, 2), "Dropout": (-6, -9), "Seq2Seq": (-6, -10), "Neural Architecture Search": (-6, 3),
    "GoogLeNet": (5, 3),
}  # fmt: skip
LENET5_1998 = ("LeNet-5 (computed)", 1998.9, 3 * 833_040 * 60_000 * 20 / PFS_DAY)


@dataclass
class ComputeReport:
    model: str
    input_size: tuple
    rows: list  # (layer, type, macs)
    forward_flops: int

    @property
    def train_flops_per_image(self) -> int:
        return TRAIN_TO_FORWARD * self.forward_flops

    def run_flops(self, images: int, epochs: float) -> float:
        return self.train_flops_per_image * images * epochs

    def run_pfs_days(self, images: int, epochs: float) -> float:
        return self.run_flops(images, epochs) / PFS_DAY

    def format(self, images: int | None = None, epochs: float | None = None) -> str:
        width = max(len(f"{n} ({t})") for n, t, _ in self.rows) + 2
        lines = [
            f'Compute of "{self.model}" at input {self.input_size}',
            f"{'Layer (type)':{width}s}{'MACs':>16s}{'FLOPs':>18s}{'share':>8s}",
        ]
        total_macs = sum(m for _, _, m in self.rows) or 1
        for name, kind, macs in self.rows:
            if macs:
                lines.append(f"{f'{name} ({kind})':{width}s}{macs:>16,}{2 * macs:>18,}{macs / total_macs:>8.1%}")
        lines += [
            f"forward:  {self.forward_flops:,} FLOPs per image ({self.forward_flops / 1e9:.4f} GFLOP)",
            f"training: {self.train_flops_per_image:,} FLOPs per image (3x forward: forward + backward)",
        ]
        if images and epochs:
            flops = self.run_flops(images, epochs)
            lines.append(
                f"run: {epochs:g} epochs x {images:,} images = {flops:.4g} FLOPs = "
                f"{flops / PFS_DAY:.4g} petaflop/s-days"
            )
        return "\n".join(lines)


def compute_report(model: nn.Module, input_size) -> ComputeReport:
    table = summary(model, input_size)
    return ComputeReport(
        table.model_name, tuple(input_size), [(r.name, r.type, r.macs) for r in table.rows], table.flops
    )


def chart(path, extra: list[tuple[str, float, float]] = (), title: str = "Two eras of AI training compute"):
    """The lesson's picture: training compute (pfs-days, log scale) against the year, with the two eras'
    doubling-time trends, the landmark runs, and ``extra`` points (name, year, pfs-days) of the user's own."""
    fig = Figure(figsize=(10, 6))
    ax = fig.subplots()
    trends = [  # (from, to, the run it passes through, doubling time in years, colour, label)
        (1996, 2012.7, LENET5_1998, 2.0, "tab:gray", "first era: 2-year doubling (Moore's law)"),
        (2012, 2018.5, LANDMARKS[0], 3.4 / 12, "tab:red", "modern era: 3.4-month doubling"),
    ]
    for start, end, (_, year, value), doubling, colour, label in trends:
        years = np.linspace(start, end, 50)
        ax.plot(years, value * 2 ** ((years - year) / doubling), "--", color=colour, label=label)
    for i, (label, x, y) in enumerate(LANDMARKS + [LENET5_1998]):
        ax.scatter([x], [y], color="tab:blue", zorder=3)
        dx, dy = LABEL_OFFSETS.get(label, (5, 3 if i % 2 else -10))
        ax.annotate(
            label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8, ha="right" if dx < 0 else "left"
        )
    # The user's runs stand at this year, at the chart's right edge: their names go to the left, and the name of a
    # run within 0.4 decades of the one below goes a line higher, so that runs of similar compute stay readable.
    below, dy = None, 0
    for label, x, y in sorted(extra, key=lambda run: run[2]):
        dy = dy + 12 if below is not None and np.log10(y / below) < 0.4 else 4
        below = y
        ax.scatter([x], [y], color="tab:green", marker="*", s=140, zorder=4)
        ax.annotate(label, (x, y), (-8, dy), textcoords="offset points", fontsize=8, color="tab:green", ha="right")
    ax.set(yscale="log", xlabel="year", ylabel="training compute (petaflop/s-days)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    fig.text(
        0.01,
        0.01,
        "Landmarks: Amodei & Hernandez, 'AI and Compute', OpenAI 2018 (AlexNet from the text, "
        "others read off its chart); LeNet-5 and green stars computed by cnnlab (3x forward FLOPs).",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    return path


# Dense peak FLOP/s by device name fragment and precision (vendor datasheets); CPUs vary too much to list. The
# first key found in the device's name wins, so a card's variants go before its plain name: a PCIe H100 has
# three quarters of the SXM card's peak.
PEAKS = {
    "H100 PCIe": {"bf16": 756e12, "fp32": 51e12},
    "H100 NVL": {"bf16": 835e12, "fp32": 60e12},
    "H200 NVL": {"bf16": 835e12, "fp32": 60e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}


def device_peak(device, precision: str) -> float | None:
    if getattr(device, "type", str(device)) != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    key = "bf16" if precision in ("bf16", "fp16") else "fp32"
    return next((peaks[key] for frag, peaks in PEAKS.items() if frag in name), None)


def year_now() -> float:
    """Today as a fractional year, to place a run on the chart."""
    today = datetime.date.today()
    return today.year + (today.timetuple().tm_yday - 0.5) / 365


def run_compute(forward_flops: int, train_images: int, eval_images: int, seconds: float, device, precision: str):
    """What a finished run computed: FLOPs (3x forward per training image, 1x per evaluated one), petaflop/s-days,
    and the FLOP/s achieved over its training time (with the fraction of the device's peak, where known)."""
    flops = TRAIN_TO_FORWARD * forward_flops * train_images + forward_flops * eval_images
    achieved = flops / seconds if seconds else None
    peak = device_peak(device, precision)
    return {
        "forward_flops_per_image": forward_flops,
        "train_images": train_images,
        "eval_images": eval_images,
        "train_flops": flops,
        "pfs_days": flops / PFS_DAY,
        "seconds": seconds,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "fraction_of_peak": achieved / peak if achieved and peak else None,
        "device": str(device),
        "precision": precision,
        "year": year_now(),
    }
