"""``pairs="auto"``: pair the backbone stages of student and teacher, never their heads.

The rules, in order (each choice and each left-out candidate comes with its reason, which
``featdistill layers`` prints):

1. Candidates are the outputs that are safe to tap, not part of what the model returns and not inside a head
   (a module named as one of :data:`HEADS`: ``classifier``, ``aux_classifier``, ``head``, ``rpn``,
   ``roi_heads``, a segmenter's ``decode_head`` or ``decoder``, ...). Heads turn features into predictions; distilling them copies predictions.
2. Like with like: when both models have an FPN (a module whose name contains ``fpn`` or ``neck``), FPN levels
   are paired with the FPN level of the same stride and the bodies are left out; otherwise bodies with bodies.
3. Feature maps are paired by equal resolution, each side's stage output (the last output at that
   resolution, not the downsample that opens the next stage); token features (ViT blocks) by equal token count.
4. The backbone outputs, what the heads read, are paired even when their strides differ 2x (a dilated ResNet
   teacher at 1/8 and a MobileNet student at 1/16): that pair replaces the one its teacher or student map had.
5. A CNN student and a ViT teacher (token blocks, no student tokens): the student's last stage with the
   teacher's last block, as the grid of its patch tokens (:mod:`featdistill.taps.grid`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ..taps import LayerOutput, trace_outputs

HEADS = frozenset(
    {
        "classifier",
        "aux_classifier",
        "head",
        "heads",
        "fc",
        "rpn",
        "roi_heads",
        "lm_head",
        "pooler",
        "decode_head",
        "auxiliary_head",
        "bbox_head",
        "mask_head",
        "cls_head",
        "decoder",  # segmentation_models_pytorch: the decoder a U-Net / FPN builds on the encoder
        "segmentation_head",
        "classification_head",
    }
)
NECKS = ("fpn", "neck")
MAX_STRIDE_RATIO = 2  # backbone outputs this many times apart in height and width are still paired

Shape = tuple[int, ...]


class AutoPair(NamedTuple):
    """One pair chosen by ``pairs="auto"``: the two tap addresses and their feature shapes."""

    student: str
    teacher: str
    shapes: tuple[Shape, Shape]


@dataclass
class Pairing:
    """What ``pairs="auto"`` chose and why: one reason per pair, and every candidate left out with its reason."""

    pairs: list[AutoPair] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def head_of(name: str) -> str | None:
    """The head module that ``name`` lies in (``roi_heads`` for ``roi_heads.box_head.fc6``), or None."""
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if part in HEADS:
            return ".".join(parts[: depth + 1])
    return None


def _in_neck(name: str) -> bool:
    return any(word in part.lower() for part in name.split(".") for word in NECKS)


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


def _block_ends(outputs: list[LayerOutput]) -> dict[int, LayerOutput]:
    """For each token count, the last block (an item of a module list: ``layers.11``) with (B, N, C) output."""
    ends: dict[int, LayerOutput] = {}
    for out in outputs:
        if len(out.shape) == 3 and out.name.rsplit(".", 1)[-1].isdigit():
            ends[out.shape[1]] = out
    return ends


def _candidates(outputs: list[LayerOutput], role: str, left_out: list[str]) -> list[LayerOutput]:
    """The tappable outputs outside heads that the model does not return; the others noted in ``left_out``."""
    heads: dict[str, None] = {}
    kept = []
    for out in outputs:
        head = head_of(out.name)
        if out.unsafe:
            continue
        if head is not None:
            heads[head] = None
        elif out.is_output:
            left_out.append(f"{role} {out.name!r}: a model output (predictions, not features)")
        else:
            kept.append(out)
    left_out += [f"{role} {head!r} and its layers: a head (it makes the predictions)" for head in heads]
    return kept


def _like_with_like(
    student: list[LayerOutput], teacher: list[LayerOutput], left_out: list[str]
) -> tuple[list[LayerOutput], list[LayerOutput], str]:
    """FPN levels with FPN levels when both models have an FPN, else bodies with bodies."""
    necks = [[out for out in side if _in_neck(out.name)] for side in (student, teacher)]
    if all(necks):
        left_out.append(
            "the body maps of both models: both have an FPN, so FPN levels are paired (like with like)"
        )
        return necks[0], necks[1], "FPN level"
    for role, neck in zip(("student", "teacher"), necks):
        if neck:
            left_out.append(
                f"the {role}'s FPN: the other model has none, so bodies are paired (like with like)"
            )
    bodies = [[out for out in side if not _in_neck(out.name)] for side in (student, teacher)]
    return bodies[0], bodies[1], "stage output"


def _size(out: LayerOutput) -> str:
    return f"{out.shape[2]}x{out.shape[3]}"


def plan_pairs(student_outputs: list[LayerOutput], teacher_outputs: list[LayerOutput]) -> Pairing:
    """Pair two traced models (``trace_outputs(..., include_unsafe=True)``) by the rules of this module.

    Raises ``ValueError`` when no pair is found.
    """
    plan = Pairing()
    student, teacher, kind = _like_with_like(
        _candidates(student_outputs, "student", plan.left_out),
        _candidates(teacher_outputs, "teacher", plan.left_out),
        plan.left_out,
    )
    student_ends, teacher_ends = _stage_ends(student), _stage_ends(teacher)
    chosen = {
        size: (student_ends[size], teacher_ends[size]) for size in set(student_ends) & set(teacher_ends)
    }
    reasons = {size: f"the {kind} at {_size(s)} in both models" for size, (s, _) in chosen.items()}
    if kind == "stage output" and student_ends and teacher_ends:
        _pair_backbone_outputs(student_ends, teacher_ends, chosen, reasons, plan.left_out)
    for role, ends, other_ends in (
        ("student", student_ends, teacher_ends),
        ("teacher", teacher_ends, student_ends),
    ):
        plan.left_out += [
            f"{role} {out.name!r} ({_size(out)}): the other model has no {kind} at this resolution"
            for size, out in ends.items()
            if size not in other_ends and not any(out in pair for pair in chosen.values())
        ]
    student_blocks, teacher_blocks = _block_ends(student), _block_ends(teacher)
    if student_ends and teacher_blocks and not student_blocks:
        _pair_map_with_grid(student_ends, teacher_blocks, chosen, reasons, plan.left_out)
    for tokens in set(student_blocks) & set(teacher_blocks):
        chosen[tokens] = (student_blocks[tokens], teacher_blocks[tokens])
        reasons[tokens] = f"the last block with {tokens} tokens in both models"
    for key in sorted(chosen, key=lambda key: chosen[key][0].order):
        s, t = chosen[key]
        plan.pairs.append(AutoPair(s.name, t.name, (s.shape, t.shape)))
        plan.reasons.append(reasons[key])
    if not plan.pairs:
        raise ValueError(
            "pairs='auto' found no spatial resolution (or token count) shared by student and teacher "
            "features outside their heads; name the pairs explicitly"
        )
    return plan


def _pair_backbone_outputs(
    student_ends: dict[Any, LayerOutput],
    teacher_ends: dict[Any, LayerOutput],
    chosen: dict[Any, tuple[LayerOutput, LayerOutput]],
    reasons: dict[Any, str],
    left_out: list[str],
) -> None:
    """Rule 4: pair the last stage output of each side when at most 2x apart and not yet paired together."""
    s_last = max(student_ends.values(), key=lambda out: out.order)
    t_last = max(teacher_ends.values(), key=lambda out: out.order)
    ratio = max(max(a, b) / min(a, b) for a, b in zip(s_last.shape[2:], t_last.shape[2:], strict=True))
    if any(s is s_last and t is t_last for s, t in chosen.values()) or ratio > MAX_STRIDE_RATIO:
        return
    for size, (s, t) in list(chosen.items()):
        if s is s_last or t is t_last:
            del chosen[size], reasons[size]
            left_out.append(
                f"pair {s.name!r} -> {t.name!r} ({_size(s)}): replaced by the backbone-output pair"
            )
    key = ("backbone", s_last.name)
    chosen[key] = (s_last, t_last)
    reasons[key] = (
        f"the backbone outputs (what the heads read), {_size(s_last)} and {_size(t_last)}: "
        "the student map is resized to the teacher's"
    )


def _pair_map_with_grid(
    student_ends: dict[Any, LayerOutput],
    teacher_blocks: dict[int, LayerOutput],
    chosen: dict[Any, tuple[LayerOutput, LayerOutput]],
    reasons: dict[Any, str],
    left_out: list[str],
) -> None:
    """Rule 5: a CNN student and a ViT teacher: the student's last stage with the teacher's last block, whose
    patch tokens the Distiller lays out as a grid; it replaces any pair with the teacher's patch embedding."""
    s_last = max(student_ends.values(), key=lambda out: out.order)
    t_last = max(teacher_blocks.values(), key=lambda out: out.order)
    for key, (s, t) in list(chosen.items()):
        del chosen[key], reasons[key]
        left_out.append(
            f"pair {s.name!r} -> {t.name!r}: a ViT teacher's maps before its blocks (patch embedding)"
        )
    key = ("grid", s_last.name)
    chosen[key] = (s_last, t_last)
    reasons[key] = (
        f"the student's last stage ({_size(s_last)}) and the teacher's last block ({t_last.shape[1]} tokens), "
        "its patch tokens laid out as a grid"
    )


def auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> list[AutoPair]:
    """Dry-run both models on ``sample_input`` and return the pairs :func:`plan_pairs` chooses."""
    return plan_auto_pairs(student, teacher, sample_input, teacher_forward).pairs


def plan_auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> Pairing:
    """Dry-run both models on ``sample_input`` (eval mode, no grad) and :func:`plan_pairs` them, with reasons."""
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
    return plan_pairs(student_outputs, teacher_outputs)
