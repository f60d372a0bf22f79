"""``pairs="auto"``: pair the last feature of every spatial resolution that student and teacher share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..taps import LayerOutput, trace_outputs


def _stage_ends(outputs: list[LayerOutput]) -> dict[tuple[int, int], LayerOutput]:
    """For each (H, W) of a 4-D output, the last module output produced at that resolution.

    Hooks fire when a module returns, so for nested modules the outermost one (the stage) fires last;
    1x1 maps (global pooling) are not stages.
    """
    ends: dict[tuple[int, int], LayerOutput] = {}
    for out in outputs:
        if len(out.shape) == 4 and out.shape[2] * out.shape[3] > 1:
            ends[(out.shape[2], out.shape[3])] = out
    return ends


def auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> list[tuple[str, str, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Dry-run both models on ``sample_input`` and return ``(student_layer, teacher_layer, shapes)`` pairs.

    Resolutions are matched exactly, in the student's order; only outputs that ran once and were not
    modified in place afterwards are candidates. Raises ``ValueError`` when the models share no resolution.
    """
    args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        with torch.no_grad():
            student_ends = _stage_ends(trace_outputs(student, lambda m: m(*args)))
            teacher_ends = _stage_ends(trace_outputs(teacher, lambda m: teacher_forward(m, *args)))
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    shared = sorted(set(student_ends) & set(teacher_ends), key=lambda size: student_ends[size].order)
    if not shared:
        raise ValueError(
            "pairs='auto' found no spatial resolution shared by student and teacher feature maps; "
            "name the pairs explicitly"
        )
    return [
        (student_ends[s].name, teacher_ends[s].name, (student_ends[s].shape, teacher_ends[s].shape))
        for s in shared
    ]
