"""Evaluation: predictions, the classification report, top-k accuracy, and the pictures of a run."""

from .metrics import Report, make_report, predict_logits, topk_accuracy
from .plots import plot_confusion, plot_history

__all__ = ["Report", "make_report", "predict_logits", "topk_accuracy", "plot_confusion", "plot_history"]
