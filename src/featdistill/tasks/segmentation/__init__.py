"""Semantic segmentation task: models, datasets, joint augmentation, metrics and inference."""

from .augment import build_eval_transform, build_train_transform
from .data import CamVid, Cityscapes, build_dataset
from .inference import evaluate, predict, slide_inference, whole_inference
from .metrics import SegmentationMeter, metrics_from_confusion
from .models import DilatedResNet, PSPNet, SegmentationModel, build_segmenter

__all__ = [
    "CamVid",
    "Cityscapes",
    "DilatedResNet",
    "PSPNet",
    "SegmentationMeter",
    "SegmentationModel",
    "build_dataset",
    "build_eval_transform",
    "build_segmenter",
    "build_train_transform",
    "evaluate",
    "metrics_from_confusion",
    "predict",
    "slide_inference",
    "whole_inference",
]
