"""From a validated config to a ready ``Trainer``: task, models, distiller, loaders, device, seeds."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .distiller import Distiller
from .distiller.distiller import default_teacher_forward
from .engine import Trainer
from .engine.distributed import DistributedContext, init_distributed, sync_batchnorm, wrap_ddp


def get_task(cfg: RunConfig) -> Any:
    """The task plug-in named by ``cfg.task`` (imported lazily: detection needs pycocotools)."""
    if cfg.task == "classification":
        from .tasks.classification.task import ClassificationTask

        return ClassificationTask(cfg)
    if cfg.task == "detection":
        from .tasks.detection.task import DetectionTask

        return DetectionTask(cfg)
    from .tasks.segmentation.task import SegmentationTask

    return SegmentationTask(cfg)


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; a requested GPU that does not exist is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        index = device.index or 0
        if index >= count:
            raise RuntimeError(
                f"device {name!r} requested but this machine has {count} CUDA device(s); "
                "use device: cpu, auto, or an existing index"
            )
    return device


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; make cuDNN deterministic when asked."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def fingerprint(cfg: RunConfig) -> str:
    """A short hash of what a checkpoint must agree with to be resumed: task, data, models, distillation."""
    keyed = {
        "task": cfg.task,
        "data": cfg.data.name,
        "model": cfg.model.__dict__,
        "distill": cfg.distill.__dict__,
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_model(
    cfg: RunConfig, task: Any, device: torch.device, ctx: DistributedContext | None = None
) -> nn.Module:
    """The student alone (no teacher configured) or a Distiller around student and teacher.

    With ``ctx`` of several processes and ``train.sync_bn``, the student's BatchNorm layers become
    SyncBatchNorm before the Distiller resolves its taps.
    """
    ctx = ctx or DistributedContext(device=device)
    student = task.build_student()
    if cfg.train.sync_bn:
        student = sync_batchnorm(student, ctx)
    if cfg.model.teacher is None:
        return student.to(device)
    teacher = task.build_teacher()
    d = cfg.distill
    pairs = d.pairs if d.pairs is not None else task.default_pairs(student, teacher)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(d.teacher_dtype or "")
    distiller = Distiller(
        student,
        teacher,
        pairs=pairs,
        method=d.method,
        alpha=d.alpha,
        sample_input=task.sample_input(),
        options=d.options,
        teacher_forward=getattr(task, "teacher_forward", default_teacher_forward),
        teacher_dtype=dtype,
        verbose=ctx.is_main,
    )
    return distiller.to(device)


def build_trainer(cfg: RunConfig) -> Trainer:
    """Everything a run needs, in the order that fails fastest (data before models before training)."""
    ctx = init_distributed(select_device(cfg.device))  # one process, or one per GPU under torchrun
    device = ctx.device
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    task = get_task(cfg)
    train_loader, val_loader = task.build_loaders(ctx.rank, ctx.world_size)
    model = build_model(cfg, task, device, ctx)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        # In place (state_dict keys unchanged). The student is compiled whole, tap hooks included: dynamo
        # traces the per-step hooks without recompiling. The teacher stays eager: its early stop raises
        # inside a hook, which would break the graph.
        (model.student if isinstance(model, Distiller) else model).compile()
    model = wrap_ddp(model, ctx)  # the Distiller (student + transforms); the teacher is not a submodule
    Path(cfg.output.dir).mkdir(parents=True, exist_ok=True)  # config.yaml is written by Trainer.fit
    return Trainer(model, task, train_loader, val_loader, cfg, device, fingerprint(cfg))
