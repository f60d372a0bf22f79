"""The one list of task names: the built-in plug-ins (imported when first used) and the user's own.

The config schema (``task:``), the CLI (``config``, ``models``, the starters) and the sweep read the names
from here; nothing else names a task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..plugins import registered
from ..suggest import did_you_mean
from .base import MEMBERS, Task

if TYPE_CHECKING:
    from ..config import RunConfig

#: name -> "module:Class", imported lazily (detection needs pycocotools).
_BUILTIN = {
    "classification": "featdistill.tasks.classification.task:ClassificationTask",
    "detection": "featdistill.tasks.detection.task:DetectionTask",
    "segmentation": "featdistill.tasks.segmentation.task:SegmentationTask",
    "pretrain": "featdistill.tasks.pretrain.task:PretrainTask",
}
_REGISTERED: dict[str, type] = {}


def register_task(name: str, task_class: type) -> type:
    """Make ``task: NAME`` in a config build ``task_class(cfg)``; returns the class (usable as a decorator's body).

    The class must offer every member of :class:`featdistill.tasks.base.Task` (inherit
    :class:`featdistill.tasks.base.TaskBase` for the defaults); a missing one is a ``TypeError`` naming it.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_task: the name must be an identifier such as 'regression', got {name!r}")
    if name in _BUILTIN:
        raise ValueError(f"register_task: {name!r} is a built-in task; choose another name")
    missing = [member for member in MEMBERS if not hasattr(task_class, member)]
    if missing:
        raise TypeError(
            f"register_task({name!r}): {getattr(task_class, '__name__', task_class)} lacks {', '.join(missing)} "
            "(see featdistill.tasks.base.Task; inherit featdistill.tasks.base.TaskBase for the defaults)"
        )
    _REGISTERED[name] = task_class
    registered("task")
    return task_class


def task_names() -> list[str]:
    """Every task a config may name: the built-in ones first, then the registered ones."""
    return [*_BUILTIN, *_REGISTERED]


def task_class(name: str) -> type:
    """The class of task ``name``; an unknown name is a ``ValueError`` with the closest valid name."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise ValueError(
            f"unknown task {name!r}{did_you_mean(name, task_names())} (a task of your own: "
            "featdistill.register_task, in a module that the config's plugins: imports)"
        )
    module, cls = _BUILTIN[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise ImportError(
            f"the {name} task needs {err.name or err}: pip install 'featdistill[{name}]' (or '[all]')"
            if name == "detection"
            else f"the {name} task cannot be loaded ({err}); pip install 'featdistill[all]'"
        ) from None


def get_task(cfg: RunConfig) -> Task:
    """The task plug-in that ``cfg.task`` names, built for ``cfg``."""
    return task_class(cfg.task)(cfg)
