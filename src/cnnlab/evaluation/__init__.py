"""Evaluation: predictions, the classification report, top-k accuracy, the pictures of a run, its report page."""

from .metrics import Report, make_report, predict_logits, topk_accuracy
from .plots import plot_confusion, plot_history, plot_worst_mistakes

__all__ = ["Report", "make_report", "predict_logits", "topk_accuracy"]
__all__ += ["plot_confusion", "plot_history", "plot_worst_mistakes"]
