"""Pictures of a run: training curves and the confusion matrix (PNG, matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history: dict, path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training and validation, as the lesson plots them."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, history.get(key, []), "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if "val_accuracy" in history and history["val_accuracy"]:
        best = max(history["val_accuracy"])
        ax_acc.set_title(f"best val accuracy {best:.4f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_confusion(matrix: np.ndarray, classes, path: str | Path, title: str = "Confusion matrix") -> Path:
    matrix = np.asarray(matrix)
    n = len(classes)
    size = max(4.5, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(
        range(n),
        labels=[str(c) for c in classes],
        rotation=45 if n > 10 or max(map(len, map(str, classes))) > 3 else 0,
        ha="right" if n > 10 else "center",
    )
    ax.set_yticks(range(n), labels=[str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.4f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_comparison(with_aug: dict, without: dict, path, title="With and without data augmentation"):
    """The lesson's two training runs side by side: loss and accuracy, training and validation."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for history, label, color in ((with_aug, "with augmentation", "tab:blue"), (without, "without", "tab:orange")):
        epochs = np.arange(1, len(history["loss"]) + 1)
        for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
            ax.plot(epochs, history[key], "--", color=color, label=f"{label}: train")
            ax.plot(epochs, history[f"val_{key}"], "-", color=color, label=f"{label}: validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_worst_mistakes(images, probs, labels, classes, path: str | Path, count: int = 16, title: str = "") -> Path:
    """The most confident wrong predictions (already chosen and ordered by the caller), each titled with the
    true class and the predicted one with its probability."""
    n = min(count, len(images))
    cols = min(n, 8) or 1
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, p, label in zip(axes.flat, images[:n], probs[:n], labels[:n]):
        pixels = image.permute(1, 2, 0).numpy()
        ax.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray" if pixels.shape[2] == 1 else None)
        guess = int(p.argmax())
        ax.set_title(f"{classes[int(label)]} -> {classes[guess]}\n{float(p[guess]):.2f}", fontsize=8, color="darkred")
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or "most confident mistakes (true -> predicted, probability)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
