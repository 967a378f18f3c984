"""Evaluation: predictions over a dataset, the lesson's classification report, top-k accuracy, confusion matrix.

The report and the confusion matrix are scikit-learn's (the lesson's ``classification_report``), so the
numbers match what a Keras user computes; top-k accuracy is a ``topk`` on the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix

from ..data.loader import InMemoryLoader, Preprocess


@torch.no_grad()
def predict_logits(
    model, data, norm, device="cpu", batch_size=1000, channels_last=True, autocast=None, max_batches=0
) -> torch.Tensor:
    """Logits (N, classes) on the CPU, in the dataset's order."""
    model.eval()
    pre = Preprocess(norm, device, channels_last)
    loader = InMemoryLoader(data, batch_size, device, shuffle=False, max_batches=max_batches)
    out = []
    for images, _ in loader.epoch(0):
        if autocast is not None:
            with autocast():
                out.append(model(pre(images)).float().cpu())
        else:
            out.append(model(pre(images)).float().cpu())
    return torch.cat(out)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1).float().mean().item()


@dataclass
class Report:
    accuracy: float
    top5: float
    report_text: str
    report: dict
    confusion: np.ndarray
    classes: tuple[str, ...]
    n: int

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "top1": self.accuracy,
            "top5": self.top5,
            "n": self.n,
            "classes": list(self.classes),
            "classification_report": self.report,
            "confusion_matrix": self.confusion.tolist(),
        }

    def format(self) -> str:
        return (
            f"{self.report_text}\n"
            f"top-1 accuracy: {self.accuracy:.4f}   top-5 accuracy: {self.top5:.4f}   ({self.n:,} images)"
        )


def make_report(logits: torch.Tensor, labels: torch.Tensor, classes, digits: int = 4) -> Report:
    y_true = labels.numpy()
    y_pred = logits.argmax(1).numpy()
    label_ids = list(range(len(classes)))
    names = [str(c) for c in classes]
    text = classification_report(y_true, y_pred, labels=label_ids, target_names=names, digits=digits, zero_division=0)
    table = classification_report(
        y_true, y_pred, labels=label_ids, target_names=names, output_dict=True, zero_division=0
    )
    return Report(
        accuracy=float((y_true == y_pred).mean()),
        top5=topk_accuracy(logits, labels, 5),
        report_text=text,
        report=table,
        confusion=confusion_matrix(y_true, y_pred, labels=label_ids),
        classes=tuple(names),
        n=len(y_true),
    )
