"""Evaluation: predictions over a dataset, the lesson's classification report, top-k accuracy, confusion matrix.

The report and the confusion matrix are scikit-learn's (the lesson's ``classification_report``), so the
numbers match what a Keras user computes; top-k accuracy is a ``topk`` on the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.loader import interleave
from ..environment import reuse_freed_memory


@torch.no_grad()
def predict_logits(
    model,
    source,
    split: str,
    preprocess,
    runtime,
    batch_size: int = 500,
    view=None,
    max_batches: int = 0,
    progress=None,
    batch_hooks=None,
) -> torch.Tensor:
    """Logits (N, classes) of a split, float32 on the CPU, in the dataset's order. With several processes each
    computes its shard and the shards are gathered: every image counted once (``max_batches``: the first
    batches only, for --dry-run; ``progress``: a tqdm bar to advance by each batch's images; ``batch_hooks``:
    called as ``(i)`` before batch i and ``(i, logits, labels)`` after it)."""
    model.eval()
    loader = source.loader(split, batch_size, runtime.device, shard=runtime.shard, view=view)
    out = []
    with reuse_freed_memory():  # each batch frees the activations the next one needs again (as in fit)
        for i, (images, labels) in enumerate(loader.epoch(0)):
            if max_batches and i >= max_batches:
                break
            if batch_hooks is not None:
                batch_hooks(i)
            with runtime.autocast():
                out.append(model(preprocess(images)).float())
            if progress is not None:
                progress.update(len(images))
            if batch_hooks is not None:
                batch_hooks(i, out[-1], labels)
    local = torch.cat(out)
    n = source.size(split)
    if max_batches:
        n = min(n, len(local) * runtime.world_size)
    return interleave([t.cpu() for t in runtime.gather(local)], n)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1).float().mean().item()


@dataclass
class Report:
    accuracy: float
    top5: float | None  # reported for more than 5 classes
    report_text: str
    report: dict
    confusion: np.ndarray
    classes: tuple[str, ...]
    n: int
    ten_crop_accuracy: float | None = None  # image folders: 10-crop over-sampling beside the centre crop
    skipped: list | None = None  # files that could not be read, with the reason
    dry_run: bool = False  # two batches in file order (often one class): a check of the pipeline, not an accuracy

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "top1": self.accuracy,
            "top5": self.top5,
            "ten_crop_accuracy": self.ten_crop_accuracy,
            "n": self.n,
            "classes": list(self.classes),
            "classification_report": self.report,
            "confusion_matrix": self.confusion.tolist(),
            "skipped_files": self.skipped or [],
            "dry_run": self.dry_run,
        }

    def format(self) -> str:
        if self.dry_run:
            return (
                f"dry run: the evaluation ran end to end on {self.n:,} images of the test split; no accuracy is "
                "reported (two batches in file order measure nothing)"
            )
        top5 = "" if self.top5 is None else f"   top-5 accuracy: {self.top5:.4f}"  # the centre crop's, as top-1
        line = f"top-1 accuracy: {self.accuracy:.4f}{top5}"
        if self.ten_crop_accuracy is not None:
            line = (
                f"accuracy, centre crop: {self.accuracy:.4f}{top5}   10-crop (corners + centre, mirrored): "
                f"{self.ten_crop_accuracy:.4f}"
            )
        text = f"{self.report_text}\n{line}   ({self.n:,} images)"
        if self.skipped:
            text += f"\nskipped {len(self.skipped)} unreadable file(s): " + "; ".join(self.skipped)
        return text


def make_report(logits: torch.Tensor, labels: torch.Tensor, classes, digits: int = 4) -> Report:
    # Imported here: scikit-learn (with SciPy) is a third of the time `import cnnlab` takes (1.3 of 3.7 s on a
    # 2-core CPU), and every command and process would pay it whether it reports or not.
    from sklearn.metrics import classification_report, confusion_matrix

    y_true = labels.numpy()
    y_pred = logits.argmax(1).numpy()
    names = [str(c) for c in classes]
    # Arrays name their classes after the largest label; the model may answer classes the labels never reach
    # (a 10-class model on images of 0s and 1s), and those answers must stay in the matrix and the report.
    names += [str(i) for i in range(len(names), logits.shape[1])]
    # The rows and averages of the classes the images and answers hold, as the lesson's classification_report(y,
    # p) gives them: a class absent from both would add zeros to the macro average (0.30 beside accuracy 1.0 for
    # 3 of 10 digits). The confusion matrix keeps every class.
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    common = {"labels": present, "target_names": [names[i] for i in present], "zero_division": 0}
    text = classification_report(y_true, y_pred, digits=digits, **common)
    table = classification_report(y_true, y_pred, output_dict=True, **common)
    return Report(
        accuracy=float((y_true == y_pred).mean()),
        top5=topk_accuracy(logits, labels, 5) if len(names) > 5 else None,
        report_text=text,
        report=table,
        confusion=confusion_matrix(y_true, y_pred, labels=list(range(len(names)))),
        classes=tuple(names),
        n=len(y_true),
    )
