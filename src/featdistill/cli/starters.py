"""Starter configs, one per task: each task plug-in's ``starter`` (the CPU-tier recipe of ``configs/`` with a
generic data folder), read through the task registry.

Only the keys that differ from the schema defaults are given; ``featdistill config --task TASK`` prints them
with every other key at its default. Each starter reads its teacher from ``runs/<task>_teacher/last.pt``,
which the same file trains first with :func:`teacher_overrides`.
"""

from __future__ import annotations

import copy
from typing import Any

from ..config import ConfigError
from ..tasks.registry import task_class


def starter(task: str) -> dict[str, Any]:
    """A fresh copy of the starter config tree of ``task``."""
    tree = task_class(task).starter
    if tree is None:
        raise ConfigError(f"task {task!r} has no starter config; write a config file and pass it instead")
    return copy.deepcopy(tree)


def teacher_overrides(task: str) -> list[str]:
    """``--set`` items that train the teacher that the starter of ``task`` reads."""
    return [*task_class(task).teacher_run, f"output.dir=runs/{task}_teacher"]
