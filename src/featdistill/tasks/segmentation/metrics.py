"""Confusion-matrix segmentation metrics: mIoU, per-class IoU, pixel and mean class accuracy.

The confusion matrix has ground truth on rows and prediction on columns. Pixels whose target equals
the ignore index are skipped. A class absent from both ground truth and prediction has an undefined
IoU (0/0 -> NaN) and is left out of the mean; a class that is predicted but absent from the ground
truth has IoU 0 and does count. The matrix is a plain int64 tensor so that distributed evaluation can
``all_reduce`` :attr:`SegmentationMeter.confusion` before calling :meth:`SegmentationMeter.compute`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SegmentationMeter", "metrics_from_confusion"]


def metrics_from_confusion(confusion: Tensor) -> dict[str, float | list[float]]:
    """Metrics of a ``[C, C]`` confusion matrix (rows ground truth, columns prediction).

    Returns ``miou`` (NaN-excluding mean of ``iou``), ``iou`` (per class, NaN when the class is absent
    from both), ``pixel_acc`` (correct / valid pixels) and ``mean_acc`` (mean per-class recall over
    classes present in the ground truth). All are NaN when there are no valid pixels.
    """
    conf = confusion.double()
    tp = conf.diagonal()
    gt = conf.sum(1)
    union = gt + conf.sum(0) - tp
    nan = torch.tensor(math.nan, dtype=torch.float64)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    recall = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
    total = conf.sum()
    return {
        "miou": torch.nanmean(iou).item(),
        "iou": iou.tolist(),
        "pixel_acc": (tp.sum() / total).item() if total > 0 else math.nan,
        "mean_acc": torch.nanmean(recall).item(),
    }


class SegmentationMeter:
    """Accumulates a confusion matrix over batches with ``torch.bincount``."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.confusion.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` is logits ``[N, C, H, W]`` or class ids ``[N, H, W]``; ``target`` ids.

        Raises ValueError on shape mismatch or ids outside ``[0, C)`` (other than the ignore index).
        """
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        c = self.num_classes
        valid = target != self.ignore_index
        p = pred[valid].long().to(self.confusion.device)
        t = target[valid].long().to(self.confusion.device)
        if t.numel() and (t.min() < 0 or t.max() >= c):
            raise ValueError(f"target ids must lie in [0, {c}) or equal {self.ignore_index}")
        if p.numel() and (p.min() < 0 or p.max() >= c):
            raise ValueError(f"predicted ids must lie in [0, {c})")
        self.confusion += torch.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, float | list[float]]:
        """Metrics of the accumulated matrix, see :func:`metrics_from_confusion`."""
        return metrics_from_confusion(self.confusion)
