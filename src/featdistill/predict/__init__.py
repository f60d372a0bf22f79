"""Running a trained student on image files: ``featdistill predict`` (:func:`predict`)."""

from .predictor import DEFAULT_OUTPUTS, predict

__all__ = ["DEFAULT_OUTPUTS", "predict"]
