"""The task registry: a user's own tasks registered, and the class of each task name built on demand.

The names themselves (the built-in plug-ins' and the registered ones) are kept by
:mod:`featdistill.config.task_names`, below the tasks, so that a config checks its ``task:`` without importing
a plug-in; the CLI (``config``, ``models``, the starters) and the sweep read them from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..config.task_names import BUILTIN_TASKS, REGISTERED_TASKS, check_task_name, task_names
from .base import MEMBERS, Task

if TYPE_CHECKING:
    from ..config import RunConfig

__all__ = ["get_task", "register_task", "task_class", "task_names"]


def register_task(name: str, task_class: type) -> type:
    """Make ``task: NAME`` in a config build ``task_class(cfg)``; returns the class (usable as a decorator's body).

    The class must offer every member of :class:`featdistill.tasks.base.Task` (inherit
    :class:`featdistill.tasks.base.TaskBase` for the defaults); a missing one is a ``TypeError`` naming it.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_task: the name must be an identifier such as 'regression', got {name!r}")
    if name in BUILTIN_TASKS:
        raise ValueError(f"register_task: {name!r} is a built-in task; choose another name")
    missing = [member for member in MEMBERS if not hasattr(task_class, member)]
    if missing:
        raise TypeError(
            f"register_task({name!r}): {getattr(task_class, '__name__', task_class)} lacks {', '.join(missing)} "
            "(see featdistill.tasks.base.Task; inherit featdistill.tasks.base.TaskBase for the defaults)"
        )
    REGISTERED_TASKS[name] = task_class
    return task_class


def task_class(name: str) -> type:
    """The class of task ``name``; an unknown name is a ``ValueError`` with the closest valid name."""
    if name in REGISTERED_TASKS:
        return REGISTERED_TASKS[name]
    check_task_name(name)
    module, cls = BUILTIN_TASKS[name].split(":")
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
