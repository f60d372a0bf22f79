"""One teacher forward for several distillers: the union of their tapped layers, captured once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .distiller import Distiller
from .teachers import run_teachers


class SharedTeacher:
    """Runs the teachers that ``distillers`` share once and returns every feature any of them taps.

    Pass the result to each distiller as ``d(*args, teacher_features=features)``: K students trained on one
    batch then cost one pass of each teacher instead of K (``featdistill sweep`` trains its variants this
    way). The distillers must hold the same teachers (one, or the same ``teachers={name: model}``), run the
    same way.
    """

    def __init__(self, distillers: Sequence[Distiller]) -> None:
        if not distillers:
            raise ValueError("SharedTeacher needs at least one Distiller")
        first = distillers[0].teacher_runs
        for d in distillers[1:]:
            runs = d.teacher_runs
            if [r.name for r in runs] != [r.name for r in first] or any(
                r.module is not f.module for r, f in zip(runs, first)
            ):
                raise ValueError("the distillers of a SharedTeacher must hold the same teacher module(s)")
            if not all(r.runs_like(f) for r, f in zip(runs, first)):
                raise ValueError("the distillers of a SharedTeacher must run their teacher the same way")
        self._runs = [
            replace(run, addresses=[a for d in distillers for a in d.teacher_runs[i].addresses])
            for i, run in enumerate(first)
        ]

    def features(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The tapped features of every distiller, detached, each teacher stopped after its last one."""
        return run_teachers(self._runs, args, kwargs)
