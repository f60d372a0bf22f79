"""The lockstep group runner that ``featdistill sweep`` and ``compare`` share: which variants this shard runs,
which train anew, and each lockstep group trained together with one ``result.json`` per variant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..engine.checkpoint import load_safely, write_text_atomic
from ..engine.distributed import barrier, is_main
from ..engine.loop import train_together
from ..run import build_trainers
from ..tasks.ingest import announce_data
from ..tasks.registry import task_class
from .grid import Variant, lockstep_groups

__all__ = [
    "Shard",
    "discard_stale",
    "other_settings",
    "pending_row",
    "plan_runs",
    "result_of",
    "say",
    "train_groups",
]


@dataclass(frozen=True)
class Shard:
    """``--shard I/N``: this process runs variants ``I, I+N, I+2N, ...`` (0-based)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard expects I/N with integers, e.g. 0/4, got {text!r}") from None
        if not 0 <= index < count:
            raise ConfigError(f"--shard {text}: I must be in 0..N-1")
        return cls(index, count)

    def takes(self, variant: Variant) -> bool:
        return variant.index % self.count == self.index


def plan_runs(
    variants: list[Variant], out_dir: Path, shard: Shard, resume: bool, command: str
) -> tuple[list[Variant], set[int], str, list[list[Variant]]]:
    """What sweep and compare set up alike: this shard's variants, those to train anew (``discard_stale``), the
    task's metric and the lockstep groups."""
    mine = [v for v in variants if shard.takes(v)]
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = discard_stale(mine, resume, command)
    metric = task_class(variants[0].cfg.task).metric  # a class attribute: no task is built for it
    return mine, stale, metric, lockstep_groups(variants)


def discard_stale(mine: list[Variant], resume: bool, command: str) -> set[int]:
    """The indices of ``mine`` to train anew, their old ``result.json`` removed (by the main process).

    A fresh run discards the results of an earlier one in its folder; a resumed one those of variants whose
    checkpoint was written with other settings (a ``--set`` changed since), which then train anew.
    """
    stale = {v.index for v in mine if resume and other_settings(Path(v.cfg.output.dir), v.cfg)}
    if is_main():
        for variant in mine:
            if not resume or variant.index in stale:
                (Path(variant.cfg.output.dir) / "result.json").unlink(missing_ok=True)
            if variant.index in stale:
                say(
                    f"featdistill {command}: {variant.name} was trained with other settings; training it anew"
                )
    barrier()
    return stale


def train_groups(
    groups: list[list[Variant]],
    shard: Shard,
    resume: bool,
    stale: set[int],
    out_dir: Path,
    metric: str,
    progress: bool,
    evaluate_on: str = "holdout",
    command: str = "sweep",
) -> None:
    """Train this shard's variants, one lockstep group at a time, and write each one's ``result.json``.

    With ``resume``, variants that already have a result are skipped and the others continue from ``last.pt``,
    but for the ``stale`` ones (indices), whose checkpoint holds other settings. ``evaluate_on``: the split each
    variant is scored on, ``holdout`` (a sweep's choice) or ``val`` (``featdistill compare``).
    """
    announced = False
    for number, members in enumerate(groups):
        todo = [v for v in members if shard.takes(v) and not (resume and result_of(v) is not None)]
        if not todo:
            continue
        say(
            f"featdistill {command}: group {number} trains "
            + ", ".join(v.name for v in todo)
            + (" in lockstep" if len(todo) > 1 else " alone")
        )
        trainers = build_trainers([v.cfg for v in todo], evaluate_on=evaluate_on)
        if not announced:  # the ingest report, once per sweep (every group reads the same data)
            announce_data(trainers[0].task, out_dir, resuming=resume)
            announced = True
        last = [Path(v.cfg.output.dir) / "last.pt" for v in todo]
        outcomes = train_together(
            trainers,
            [f"v{v.index}" for v in todo],
            [
                path if resume and v.index not in stale and path.is_file() else None
                for v, path in zip(todo, last)
            ],
            progress=progress,
        )
        for variant, outcome in zip(todo, outcomes):
            row = {
                "index": variant.index,
                "name": variant.name,
                "values": variant.values,
                "status": outcome.status,
                "metric": outcome.metrics.get(metric),
                "metrics": outcome.metrics,
                "steps": outcome.steps,
                "seconds": outcome.seconds,
                "group": number,
                "error": outcome.error,
            }
            if is_main():
                write_text_atomic(json.dumps(row, indent=2), Path(variant.cfg.output.dir) / "result.json")


def say(message: str) -> None:
    """Print once, from the main process."""
    if is_main():
        print(message, flush=True)


def other_settings(folder: Path, cfg: RunConfig) -> bool:
    """Whether ``folder/last.pt`` was written with other settings than ``cfg``.

    Where the run reads and writes and what it runs on (``output``, ``device``, ``data.root``, ``data.workers``)
    do not count: a sweep moved to another machine or folder resumes.
    """
    last = folder / "last.pt"
    if not last.is_file():
        return False
    saved = load_safely(last, mmap=True).get("config", {})  # the settings only: the weights are not read
    return _settings(saved) != _settings(cfg.to_dict())


def _settings(tree: dict[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in tree.items() if k not in ("output", "device")}
    settings["data"] = {k: v for k, v in tree.get("data", {}).items() if k not in ("root", "workers")}
    return settings


def result_of(variant: Variant) -> dict[str, Any] | None:
    """The variant's ``result.json`` (written when it finished or failed), or None before."""
    path = Path(variant.cfg.output.dir) / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pending_row(variant: Variant, group: int, why: str = "") -> dict[str, Any]:
    """The report row of a variant without a result: ``why`` (or "not run") as its status."""
    return {
        "index": variant.index,
        "name": variant.name,
        "values": variant.values,
        "status": why or "not run",
        "metric": None,
        "group": group,
        "error": "",
    }
