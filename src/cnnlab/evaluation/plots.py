"""Pictures of a run: training curves and the confusion matrix (PNG, matplotlib without a display).

Figures are made with ``matplotlib.figure.Figure``, not pyplot: nothing global, so importing cnnlab leaves the
user's backend (a notebook's inline one) as it was, and no figure stays open.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import UsageError


def _subplots(figsize, rows: int = 1, columns: int = 1, **kwargs):
    """``pyplot.subplots`` without pyplot: a figure of its own and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, **kwargs)


def _save(fig, path, dpi: int, rect=None, fmt=None):
    """Lay out and write the figure to ``path`` (a file name, or a binary file object with ``fmt``)."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi, format=fmt)
    return path


def plot_history(history: dict, path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training and validation, as the lesson plots them."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, (ax_loss, ax_acc) = _subplots((11, 4), 1, 2)
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, history.get(key, []), "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label=f"val {key}")
        ax.set(xlabel="epoch", ylabel=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even one
        ax.grid(alpha=0.3)
        ax.legend()
    if history.get("val_accuracy"):
        ax_acc.set_title(f"best val accuracy {max(history['val_accuracy']):.4f}")
    fig.suptitle(title)
    return _save(fig, path, 110)


def plot_confusion(matrix: np.ndarray, classes, path: str | Path, title: str = "Confusion matrix") -> Path:
    matrix = np.asarray(matrix)
    n = len(classes)
    size = max(4.5, 0.55 * n + 2)
    fig, ax = _subplots((size, size))
    ax.imshow(matrix, cmap="Blues")
    labels = [str(c) for c in classes]
    rotation = 45 if n > 10 or max(map(len, labels)) > 3 else 0
    ax.set_xticks(range(n), labels=labels, rotation=rotation, ha="right" if n > 10 else "center")
    ax.set_yticks(range(n), labels=labels)
    ax.set(xlabel="predicted", ylabel="true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i, j in np.ndindex(n, n):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color=color)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.4f})")
    return _save(fig, path, 110)


def plot_comparison(with_aug: dict, without: dict, path, title="With and without data augmentation"):
    """The lesson's two training runs side by side: loss and accuracy, training and validation."""
    fig, (ax_loss, ax_acc) = _subplots((12, 4.5), 1, 2)
    for history, label, color in ((with_aug, "with augmentation", "tab:blue"), (without, "without", "tab:orange")):
        epochs = np.arange(1, len(history["loss"]) + 1)
        for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
            ax.plot(epochs, history[key], "--", color=color, label=f"{label}: train")
            ax.plot(epochs, history[f"val_{key}"], "-", color=color, label=f"{label}: validation")
            ax.set(xlabel="epoch", ylabel=key)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(alpha=0.3)
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, 110)


def worst_mistakes(probs, labels, count: int = 16) -> np.ndarray:
    """Indices of the ``count`` most confident wrong predictions, most confident first."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def plot_worst_mistakes(images, probs, labels, classes, path: str | Path, count: int = 16, title: str = "") -> Path:
    """A grid of the most confident wrong predictions, each image titled with the predicted class and its
    probability, and the true class with the probability given to it.

    ``images`` are uint8 (N, C, H, W), grey or RGB (NumPy or a CPU tensor), in the order of ``probs`` (N, classes)
    and ``labels`` (N,). They may be a whole split, or only the examples the caller already chose with
    ``worst_mistakes`` (a data source then fetches only those): the wrong ones among them are shown, most
    confident first, so a chosen set keeps its order."""
    images = np.asarray(images)
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(np.int64)
    if not (len(images) == len(probs) == len(labels)):
        raise UsageError(f"{len(images)} images, {len(probs)} rows of probabilities and {len(labels)} labels differ")
    chosen = worst_mistakes(probs, labels, count)
    if len(chosen) == 0:
        fig, ax = _subplots((6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no mistakes among {len(labels):,} images", ha="center", va="center", fontsize=12)
    else:
        columns = min(len(chosen), 8)
        rows = -(-len(chosen) // columns)
        fig, axes = _subplots((columns * 1.6, rows * 2.0 + 0.5), rows, columns, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, i in zip(axes.flat, chosen):
            tile = images[i]
            if tile.shape[0] == 1:
                ax.imshow(tile[0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(np.ascontiguousarray(tile.transpose(1, 2, 0)).astype(np.uint8))
            pred, true = int(probs[i].argmax()), int(labels[i])
            ax.set_title(
                f"predicted {classes[pred]}: {probs[i, pred]:.2f}\ntrue {classes[true]}: {probs[i, true]:.2f}",
                fontsize=8,
                color="darkred",
            )
    fig.suptitle(title or "Most confident mistakes", fontsize=10)
    return _save(fig, path, 100)


def plot_runs(histories: dict, path, title: str = "Runs compared"):
    """Several runs' curves overlaid, one colour per run: loss, accuracy, val_loss and val_accuracy per epoch.
    ``histories`` maps a run's name to its history; ``path`` is a file name or a binary file object (PNG)."""
    fig, axes = _subplots((12, 7.5), 2, 2, sharex=True)
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, history) in enumerate(histories.items()):
        color = colors[index % len(colors)]
        for key, ax in zip(keys, axes.flat):
            if values := history.get(key):
                ax.plot(np.arange(1, len(values) + 1), values, "o-", ms=3, color=color, label=name)
    for key, ax in zip(keys, axes.flat):
        ax.set_title(key)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # the axes above share it
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=9, frameon=False)
    fig.suptitle(title)
    return _save(fig, path, 100, rect=(0, 0.04 + 0.03 * ((len(labels) - 1) // 3), 1, 1), fmt="png")
