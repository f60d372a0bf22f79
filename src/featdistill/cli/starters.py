"""Starter configs, one per task: the CPU-tier recipes of ``configs/`` with a generic data folder.

Only the keys that differ from the schema defaults are given; ``featdistill config --task TASK`` prints them
with every other key at its default. Each starter reads its teacher from ``runs/<task>_teacher/last.pt``,
which the same file trains first with :func:`teacher_overrides`.
"""

from __future__ import annotations

import copy
from typing import Any

STARTERS: dict[str, dict[str, Any]] = {
    # configs/classification/cifar10_cpu_cwt.yaml
    "classification": {
        "task": "classification",
        "data": {"name": "imagefolder", "root": "data/cifar10", "limit": 5000, "batch_size": 64},
        "model": {
            "student": "resnet8",
            "teacher": "resnet20",
            "num_classes": 10,
            "teacher_weights": "runs/classification_teacher/last.pt",
        },
        "distill": {"method": "cwt", "pairs": [["layer3", "layer3"]], "alpha": 3.0e-4},
        "train": {"epochs": 15, "lr": 0.05, "eval_every": 5},
        "output": {"dir": "runs/classification_cwt", "tensorboard": False},
    },
    # configs/detection/coco128_cpu_faster_rcnn_cwt.yaml
    "detection": {
        "task": "detection",
        "data": {
            "name": "coco",
            "root": "data/coco128",
            "limit": 32,
            "val_limit": 32,
            "batch_size": 4,
            "eval_batch_size": 8,
            "options": {"flip_prob": 0.5, "scale_range": [1.0, 1.25]},
        },
        "model": {
            "student": "fasterrcnn",
            "teacher": "fasterrcnn",
            "num_classes": 81,
            "teacher_weights": "runs/detection_teacher/last.pt",
            "options": {
                "min_size": 128,
                "max_size": 224,
                # fewer proposals and sampled RoIs than on COCO (CPU cost, few objects per image)
                "rpn_pre_nms_top_n_train": 500,
                "rpn_post_nms_top_n_train": 200,
                "rpn_pre_nms_top_n_test": 250,
                "rpn_post_nms_top_n_test": 100,
                "box_batch_size_per_image": 64,
                "box_score_thresh": 0.001,  # weak detectors still return ranked detections for COCOeval
                "student": {"backbone": "resnet18"},
                "teacher": {"backbone": "resnet34"},
            },
        },
        "distill": {"method": "cwt", "alpha": 5.0e-6},
        "train": {
            "epochs": 16,
            "lr": 0.01,
            "weight_decay": 1.0e-4,
            "schedule": "step",
            "milestones": [11, 15],
            "warmup_epochs": 1.0,
            "clip_grad": 10.0,
            "eval_every": 16,
        },
        "output": {"dir": "runs/detection_cwt", "tensorboard": False},
    },
    # configs/segmentation/camvid_cpu_cwt.yaml
    "segmentation": {
        "task": "segmentation",
        "data": {
            "name": "camvid",
            "root": "data/camvid",
            "batch_size": 8,
            "options": {"crop_size": 96, "scale_range": [0.75, 1.5]},
        },
        "model": {
            "student": "pspnet",
            "teacher": "pspnet",
            "num_classes": 11,
            "teacher_weights": "runs/segmentation_teacher/last.pt",
            "options": {"student": {"backbone": "resnet18"}, "teacher": {"backbone": "resnet18"}},
        },
        "distill": {"method": "cwt", "alpha": 5.7e-4},
        "train": {"epochs": 8, "lr": 0.02, "schedule": "poly", "eval_every": 8},
        "output": {"dir": "runs/segmentation_cwt", "tensorboard": False},
    },
}

# --set overrides that turn a starter into the run that trains its teacher (as configs/<task>/*_teacher.yaml)
_TEACHER_RUNS: dict[str, list[str]] = {
    "classification": ["model.teacher=null", "model.student=resnet20", "train.epochs=30"],
    "detection": ["model.teacher=null", "model.options.student.backbone=resnet34"],
    "segmentation": ["model.teacher=null", "train.epochs=24"],
}


def starter(task: str) -> dict[str, Any]:
    """A fresh copy of the starter config tree of ``task``."""
    return copy.deepcopy(STARTERS[task])


def teacher_overrides(task: str) -> list[str]:
    """``--set`` items that train the teacher that the starter of ``task`` reads."""
    return [*_TEACHER_RUNS[task], f"output.dir=runs/{task}_teacher"]
