"""The task names a config may give (``task:``): the built-in plug-ins and those the user registered.

The list lives here, below the tasks, so that a config checks its task name without importing a plug-in
(detection needs pycocotools); :mod:`featdistill.tasks.registry` registers tasks and builds their classes.
"""

from __future__ import annotations

from ..suggest import did_you_mean

#: name -> "module:Class" of the built-in plug-ins, imported only when a task is built.
BUILTIN_TASKS = {
    "classification": "featdistill.tasks.classification.task:ClassificationTask",
    "detection": "featdistill.tasks.detection.task:DetectionTask",
    "segmentation": "featdistill.tasks.segmentation.task:SegmentationTask",
}
#: name -> class of the tasks registered with ``featdistill.register_task``.
REGISTERED_TASKS: dict[str, type] = {}


def task_names() -> list[str]:
    """Every task a config may name: the built-in ones first, then the registered ones."""
    return [*BUILTIN_TASKS, *REGISTERED_TASKS]


def check_task_name(name: str) -> None:
    """Raise a ``ValueError`` naming the closest valid task unless ``name`` is a known task."""
    if name not in BUILTIN_TASKS and name not in REGISTERED_TASKS:
        raise ValueError(
            f"unknown task {name!r}{did_you_mean(name, task_names())} (a task of your own: "
            "featdistill.register_task, in a module that the config's plugins: imports)"
        )
