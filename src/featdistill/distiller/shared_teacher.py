"""One teacher forward for several distillers: the union of their tapped layers, captured once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..taps import FeatureTaps
from .distiller import Distiller, run_teacher


class SharedTeacher:
    """Runs the teacher that ``distillers`` share once and returns every feature any of them taps.

    Pass the result to each distiller as ``d(*args, teacher_features=features)``: K students trained on one
    batch then cost one teacher pass instead of K (``featdistill sweep`` trains its variants this way).
    """

    def __init__(self, distillers: Sequence[Distiller]) -> None:
        if not distillers:
            raise ValueError("SharedTeacher needs at least one Distiller")
        first = distillers[0]
        for d in distillers[1:]:
            if d.teacher is not first.teacher:
                raise ValueError("the distillers of a SharedTeacher must hold the same teacher module")
            # a task's teacher_forward is a method of each variant's task: the same function runs it the same way
            same_forward = getattr(d.teacher_forward, "__func__", d.teacher_forward) is getattr(
                first.teacher_forward, "__func__", first.teacher_forward
            )
            if d.teacher_dtype != first.teacher_dtype or not same_forward:
                raise ValueError("the distillers of a SharedTeacher must run their teacher the same way")
        self.teacher, self.teacher_dtype, self.teacher_forward = (
            first.teacher,
            first.teacher_dtype,
            first.teacher_forward,
        )
        addresses = [pair.teacher for d in distillers for pair in d.pairs]
        self._taps = FeatureTaps(self.teacher, addresses, role="teacher")

    def features(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The tapped features of every distiller, detached, the teacher stopped after the last one."""
        return run_teacher(self.teacher, self._taps, self.teacher_forward, self.teacher_dtype, args, kwargs)
