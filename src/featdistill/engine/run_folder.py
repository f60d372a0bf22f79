"""A run folder that holds a run is never trained over: it is resumed, or moved aside first.

``featdistill train`` into an ``output.dir`` that holds a started or finished run (``last.pt``, ``log.csv`` or
``config.yaml``), without ``--resume``, stops in one line naming ``--resume auto`` and ``--overwrite``;
``--overwrite`` moves the old run to ``<dir>.old-<YYYYmmdd-HHMMSS>`` beside it, deleting nothing. Sweeps and
compare apply the same rule to each variant folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from .run_lock import LOCK_NAME

__all__ = ["RUN_FILES", "RunExistsError", "claim_run_folders", "holds_run", "move_aside"]

#: The files whose presence says that a folder holds a run (started: log.csv, config.yaml; checkpointed: last.pt).
RUN_FILES = ("last.pt", "log.csv", "config.yaml")


class RunExistsError(RuntimeError):
    """The output folder holds a run, and neither ``--resume`` nor ``--overwrite`` was given."""


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a started or finished run."""
    return any((Path(folder) / name).is_file() for name in RUN_FILES)


def move_aside(folder: str | Path) -> Path:
    """Move what ``folder`` holds (its lock file excepted) to a new ``<folder>.old-<time>`` beside it; return it.

    Nothing is deleted; the folder itself stays (a run holding its lock keeps it).
    """
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.old-{stamp}")
    number = 1
    while aside.exists():
        number += 1
        aside = folder.with_name(f"{folder.name}.old-{stamp}-{number}")
    aside.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry.name != LOCK_NAME:
            os.replace(entry, aside / entry.name)
    return aside


def claim_run_folders(
    folders: Iterable[str | Path], resume: bool, overwrite: bool, move: bool = True
) -> list[tuple[Path, Path]]:
    """Make ``folders`` ready for new runs: refuse those that hold a run unless ``resume`` or ``overwrite``.

    With ``overwrite`` each one that holds a run is moved aside (:func:`move_aside`; only where ``move``: the
    main process of a distributed job); returns ``(folder, where its old run went)`` pairs. With ``resume``
    nothing is checked or moved: the runs continue.
    """
    if resume and overwrite:
        raise RunExistsError("--resume and --overwrite exclude each other: continue the run, or start anew")
    if resume:
        return []
    taken = [Path(folder) for folder in folders if holds_run(folder)]
    if not taken:
        return []
    if not overwrite:
        more = f" and {len(taken) - 1} more run folder(s)" if len(taken) > 1 else ""
        raise RunExistsError(
            f"{taken[0]}{more} already holds a run ({', '.join(n for n in RUN_FILES if (taken[0] / n).is_file())}); "
            f"continue it with --resume auto, or start anew with --overwrite (the old run is moved to "
            f"{taken[0].name}.old-<date-time> beside it, nothing is deleted)"
        )
    return [(folder, move_aside(folder)) for folder in taken] if move else []
