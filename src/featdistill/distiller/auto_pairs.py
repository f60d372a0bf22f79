"""``pairs="auto"``: pair the last feature of every spatial resolution that student and teacher share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..taps import LayerOutput, trace_outputs


def _resolution(out: LayerOutput) -> tuple[int, int] | None:
    """(H, W) of a 4-D output; None for vectors, tokens and 1x1 maps (global pooling, squeeze-excitation)."""
    if len(out.shape) != 4 or out.shape[2] * out.shape[3] == 1:
        return None
    return out.shape[2], out.shape[3]


def _same_aspect(size: tuple[int, int], reference: tuple[int, int]) -> bool:
    """Whether ``size`` is ``reference`` downsampled (up to rounding); a channels-last (N, H, W, C) tensor,
    as inside ConvNeXt blocks, reads as the "resolution" (W, C) and fails this."""
    return abs(size[0] * reference[1] - size[1] * reference[0]) < reference[0] + reference[1]


def _starts_next_stage(out: LayerOutput, spans: dict[str, set[tuple[int, int]]]) -> bool:
    """Whether ``out`` lies at the start of a module that goes from its resolution to exactly one other.

    Such a module is the next stage (a stride-2 block, ``stages.1`` of a ConvNeXt, a downsample
    ``Sequential``) and ``out`` is its norm, downsample or first conv, not the end of the current stage.
    A container of several stages (``features``, ``stages``) spans more resolutions and does not count.
    """
    parts = out.name.split(".")
    ancestors = (".".join(parts[:depth]) for depth in range(1, len(parts)))
    return any(len(spans.get(name, ())) == 2 for name in ancestors)


def _stage_ends(outputs: list[LayerOutput]) -> dict[tuple[int, int], LayerOutput]:
    """For each (H, W) of a 4-D output, the last tappable module output produced at that resolution.

    Hooks fire when a module returns, so for nested modules the outermost one (the stage) fires last.
    An output at the start of the next stage (see :func:`_starts_next_stage`) is taken only when its
    resolution has no other candidate. 1x1 maps (global pooling) are not stages, nor are 4-D tensors
    whose last two dimensions do not keep the aspect ratio of the first feature map (channels-last).
    """
    sizes = {out.name: _resolution(out) for out in outputs}
    reference = next((size for size in sizes.values() if size is not None), None)
    spans: dict[str, set[tuple[int, int]]] = {}
    for name, size in sizes.items():
        if size is not None and _same_aspect(size, reference):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                spans.setdefault(".".join(parts[:depth]), set()).add(size)
    preferred: dict[tuple[int, int], LayerOutput] = {}
    fallback: dict[tuple[int, int], LayerOutput] = {}
    for out in outputs:
        size = sizes[out.name]
        if out.unsafe or size is None or not _same_aspect(size, reference):
            continue
        fallback[size] = out
        if not _starts_next_stage(out, spans):
            preferred[size] = out
    return {**fallback, **preferred}


AutoPair = tuple[str, str, tuple[tuple[int, ...], tuple[int, ...]]]


def pair_stage_ends(student_outputs: list[LayerOutput], teacher_outputs: list[LayerOutput]) -> list[AutoPair]:
    """Pair the stage ends of two traced models (``trace_outputs(..., include_unsafe=True)``) by resolution.

    Resolutions are matched exactly, in the student's order. Raises ``ValueError`` when the models share
    no resolution.
    """
    student_ends, teacher_ends = _stage_ends(student_outputs), _stage_ends(teacher_outputs)
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


def auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> list[AutoPair]:
    """Dry-run both models on ``sample_input`` and return ``(student_layer, teacher_layer, shapes)`` pairs.

    Only outputs that ran once and were not modified in place afterwards are candidates (see
    :func:`pair_stage_ends`).
    """
    args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        with torch.no_grad():
            student_outputs = trace_outputs(student, lambda m: m(*args), include_unsafe=True)
            teacher_outputs = trace_outputs(teacher, lambda m: teacher_forward(m, *args), include_unsafe=True)
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    return pair_stage_ends(student_outputs, teacher_outputs)
