"""From a validated config to a ready ``Trainer``: task, models, distiller, loaders, device, seeds."""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .card import card_writer
from .config import RunConfig
from .distiller import Distiller
from .distiller.teachers import teacher_prefix
from .engine import Trainer
from .engine.distributed import DistributedContext, init_distributed, sync_batchnorm, wrap_ddp
from .tasks.base import Task
from .tasks.registry import get_task

OWN_WEIGHTS = ("hf:",)  # model names whose builder loads the model's own trained weights


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
        "model": {
            k: v for k, v in cfg.model.__dict__.items() if k != "teachers" or v
        },  # one teacher: as before
        "distill": cfg.distill.__dict__,
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_teacher(task: Task, name: str | None = None) -> nn.Module:
    """The task's teacher (``model.teacher``, or the ``model.teachers`` entry ``name``), built without
    drawing from the global RNG.

    The student and the transforms then get the same initialisation whether a teacher is built for them
    alone (``train``) or once for several students (``sweep``). A teacher without weights warns: it is
    untrained (``hf:`` models carry their own weights).
    """
    with torch.random.fork_rng(devices=[]):
        teacher = task.build_teacher() if name is None else task.build_teacher(name)
    spec = task.cfg.model.teacher_spec(name)
    if spec.weights is None and not spec.model.startswith(OWN_WEIGHTS):
        model, weights = (
            ("model.teacher", "model.teacher_weights")
            if name is None
            else (f"model.teachers.{name}.model", f"model.teachers.{name}.weights")
        )
        warnings.warn(
            f"the teacher is untrained: {model} {spec.model!r} is built without weights "
            f"({weights} is null), so the student would learn random features; set "
            f"{weights} to the trained teacher's checkpoint",
            stacklevel=2,
        )
    return teacher


def build_teachers(task: Task) -> dict[str, nn.Module]:
    """Every configured teacher by name: ``{"": teacher}`` for ``model.teacher``, else ``model.teachers``."""
    names = list(task.cfg.model.teachers)
    if not names:
        return {"": build_teacher(task)}
    return {name: build_teacher(task, name) for name in names}


def default_pairs(task: Task, student: nn.Module, teachers: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """The task's default pairs with each teacher, named ``name:layer`` when there are several."""
    return [
        (s, teacher_prefix(name) + t)
        for name, teacher in teachers.items()
        for s, t in task.default_pairs(student, teacher)
    ]


def build_model(
    cfg: RunConfig,
    task: Task,
    device: torch.device,
    ctx: DistributedContext | None = None,
    teachers: dict[str, nn.Module] | None = None,
) -> nn.Module:
    """The student alone (no teacher configured) or a Distiller around student and teacher(s).

    With ``ctx`` of several processes and ``train.sync_bn``, the student's BatchNorm layers become
    SyncBatchNorm before the Distiller resolves its taps. ``teachers`` are already built (and shared), as
    :func:`build_teachers` returns them.
    """
    ctx = ctx or DistributedContext(device=device)
    student = task.build_student()
    if cfg.train.sync_bn:
        student = sync_batchnorm(student, ctx)
    if not cfg.model.distilled:
        return student.to(device)
    teachers = teachers if teachers is not None else build_teachers(task)
    d = cfg.distill
    pairs = d.pairs if d.pairs is not None else default_pairs(task, student, teachers)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(d.teacher_dtype or "")
    distiller = Distiller(
        student,
        **({"teacher": teachers[""]} if "" in teachers else {"teachers": teachers}),
        pairs=pairs,
        method=d.method,
        alpha=d.alpha,
        auto_ratio=d.auto_ratio,
        sample_input=task.sample_input(),
        options=d.options,
        teacher_forward=task.teacher_forward,
        teacher_dtype=dtype,
        verbose=ctx.is_main,
    )
    return distiller.to(device)


def build_trainer(cfg: RunConfig, evaluate_on: str = "val") -> Trainer:
    """Everything a run needs, in the order that fails fastest (data before models before training)."""
    return build_trainers([cfg], evaluate_on)[0]


def build_trainers(cfgs: list[RunConfig], evaluate_on: str = "val") -> list[Trainer]:
    """Trainers that share one task, one pair of loaders and one teacher (``featdistill sweep``'s lockstep).

    The configs may differ only in what ``featdistill.sweep.grid.LOCKSTEP_FREE`` lists (student, distillation,
    optimiser, output); each trainer's student and transforms are initialised as in a run of its own.
    ``evaluate_on``: ``"val"`` (the reported split) or ``"holdout"`` (``data.holdout``, for model selection).
    """
    first = cfgs[0]
    ctx = init_distributed(select_device(first.device))  # one process, or one per GPU under torchrun
    device = ctx.device
    seed_everything(first.train.seed, first.train.deterministic)
    task = get_task(first)
    train_loader, val_loader = task.build_loaders(ctx.rank, ctx.world_size, evaluate_on=evaluate_on)
    with_teacher = [cfg for cfg in cfgs if cfg.model.distilled]
    teachers = build_teachers(_variant_task(task, with_teacher[0])) if with_teacher else None
    trainers = []
    for cfg in cfgs:
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        variant = _variant_task(task, cfg)
        model = build_model(cfg, variant, device, ctx, teachers=teachers)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.train.compile:
            # In place (state_dict keys unchanged). The student is compiled whole, tap hooks included: dynamo
            # traces the per-step hooks without recompiling. The teacher stays eager: its early stop raises
            # inside a hook, which would break the graph.
            (model.student if isinstance(model, Distiller) else model).compile()
        model = wrap_ddp(model, ctx)  # the Distiller (student + transforms); the teacher is not a submodule
        Path(cfg.output.dir).mkdir(parents=True, exist_ok=True)  # config.yaml is written by Trainer.fit
        trainers.append(
            Trainer(
                model,
                variant,
                train_loader,
                val_loader,
                cfg,
                device,
                fingerprint(cfg),
                evaluate_on,
                card=card_writer(variant, cfg, evaluate_on),
            )
        )
    return trainers


def _variant_task(task: Task, cfg: RunConfig) -> Task:
    """The task of another variant of ``task``'s lockstep group: built from its own config, with the data
    that ``task`` read (the group shares it)."""
    if cfg is task.cfg:
        return task
    variant = get_task(cfg)
    variant.share_data(task)
    return variant
