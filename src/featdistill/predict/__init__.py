"""Running a trained student on image files: ``featdistill predict`` (:func:`predict`)."""

from .predictor import predict

__all__ = ["predict"]
