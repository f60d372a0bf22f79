"""Scoring what ``predict`` wrote against the ground truth, with the metrics ``eval`` reports.

So that an export can be checked where it is deployed, from its output files alone. What is scored and how is
the task's (:meth:`featdistill.tasks.base.Task.score_predictions`): segmentation scores label PNGs against a
dataset's labels (mIoU, pixel and mean class accuracy, %), detection a COCO results JSON against a COCO
annotation file (COCO AP, 0-1). This module names no task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tasks.registry import task_class

__all__ = ["score_predictions"]


def score_predictions(task: str, predictions: str | Path, truth: Any, **options: Any) -> dict[str, float]:
    """The metrics of ``predictions`` (what ``featdistill predict`` wrote for a ``task`` student) on ``truth``.

    ``truth`` and ``options`` are the task's: a segmentation dataset and ``images_root=`` (the folder predict
    read), or a COCO annotation file and ``image_ids=`` (only those images).
    """
    return task_class(task).score_predictions(predictions, truth, **options)
