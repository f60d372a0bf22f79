"""Detection / instance segmentation task: torchvision detectors, COCO data, augmentation, COCO AP.

Importing this package needs ``pycocotools`` (``pip install featdistill[detection]``).
"""

from .augment import Compose, RandomCrop, RandomHorizontalFlip, RandomResize, remove_small_boxes
from .data import CocoDetection, collate_fn, load_coco
from .evaluate import IOU_TYPES, METRIC_NAMES, CocoEvaluator
from .models import BACKBONES, DETECTORS, build_detector, fpn_level_names, match_transform
from .task import DetectionTask, ScaleJitter, teacher_forward

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "IOU_TYPES",
    "METRIC_NAMES",
    "CocoDetection",
    "CocoEvaluator",
    "Compose",
    "DetectionTask",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResize",
    "ScaleJitter",
    "build_detector",
    "collate_fn",
    "fpn_level_names",
    "load_coco",
    "match_transform",
    "remove_small_boxes",
    "teacher_forward",
]
