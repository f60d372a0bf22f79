"""The ``models`` command: the model names each task accepts for ``model.student`` and ``model.teacher``.

One name per line followed by where it comes from, so that ``featdistill models | grep resnet`` finds a name.
"""

from __future__ import annotations

import argparse

from ..tasks.registry import task_class, task_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``models`` command's arguments."""
    parser.add_argument("--task", help="list one task's models only (default: every task)")


def catalogue(task: str | None = None) -> str:
    """The listing printed by ``featdistill models``: sections of ``name  origin`` lines."""
    lines = []
    for name in [task] if task else task_names():
        try:
            sections = task_class(name).catalogue()
        except ImportError as err:
            raise ImportError(f"{name} models: {err}") from None
        for title, rows in sections:
            width = max(len(row[0]) for row in rows) + 2
            lines += [f"# {title}", *(f"{model.ljust(width)}{origin}" for model, origin in rows)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    """Print the model names."""
    print(catalogue(args.task), end="")
