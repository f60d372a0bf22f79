"""``pairs="auto"``: pair the backbone stages of student and teacher, never their heads.

The rules, in order (each choice and each left-out candidate comes with its reason, which
``featdistill layers`` prints):

0. A model that declares its own feature levels (``model.feature_levels()``: ``{kind: {tap address: stride}}``,
   as an ``hf:`` detector does for its backbone stages and encoder maps) is paired level by level: the same
   kind at the same stride, when both models declare them. The rules below read a trace, which cannot see
   maps that a module returns inside a tuple or a ``ModelOutput``.
1. Candidates are the outputs that are safe to tap, not part of what the model returns and not inside a head
   (a module named as one of :data:`HEADS`: ``classifier``, ``aux_classifier``, ``head``, ``rpn``,
   ``roi_heads``, a segmenter's ``decode_head`` or ``decoder``, a DETR's ``bbox_predictor``, ...). Heads turn
   features into predictions; distilling them copies predictions. A name of :data:`HEADS` inside a stem
   (:data:`STEMS`: the max-pool ``embedder.pooler`` of an HF ResNet) is no head. Positional encodings
   (:data:`POSITIONAL`) are left out too: they are computed from positions, not from the image.
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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ..taps import FeatureTaps, LayerOutput, trace_outputs, unwrap_model

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
        # transformers detectors (DETR, YOLOS, Deformable DETR, RT-DETR, D-FINE): class and box predictions
        "class_labels_classifier",
        "bbox_predictor",
        "class_embed",
        "bbox_embed",
        "enc_score_head",
        "enc_bbox_head",
    }
)
STEMS = frozenset({"embedder", "stem"})  # a pooler in a stem is its stride-2 max-pool, not a head
POSITIONAL = frozenset({"position_embedding", "position_embeddings"})
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
    """The head module that ``name`` lies in (``roi_heads`` for ``roi_heads.box_head.fc6``), or None.

    A head's name right inside a stem (``embedder.pooler``) names part of the body: HF ResNets (RT-DETR's
    backbone too) call their stem max-pool ``embedder.pooler`` and their global pooling head ``pooler``."""
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if part in HEADS and not (depth and parts[depth - 1] in STEMS):
            return ".".join(parts[: depth + 1])
    return None


def _positional(name: str) -> str | None:
    """The positional-encoding module that ``name`` lies in, or None."""
    parts = name.split(".")
    depth = next((i for i, part in enumerate(parts) if part in POSITIONAL), None)
    return None if depth is None else ".".join(parts[: depth + 1])


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
    positional: dict[str, None] = {}
    kept = []
    for out in outputs:
        head, encoding = head_of(out.name), _positional(out.name)
        if out.unsafe:
            continue
        if head is not None:
            heads[head] = None
        elif encoding is not None:
            positional[encoding] = None
        elif out.is_output:
            left_out.append(f"{role} {out.name!r}: a model output (predictions, not features)")
        else:
            kept.append(out)
    left_out += [f"{role} {head!r} and its layers: a head (it makes the predictions)" for head in heads]
    left_out += [
        f"{role} {name!r}: a positional encoding (computed from positions, not from the image)"
        for name in positional
    ]
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


def declared_levels(model: nn.Module) -> dict[str, dict[str, int]]:
    """The feature levels ``model`` declares for rule 0, ``model.feature_levels()`` (``{kind: {tap address:
    stride}}``), or ``{}`` where it declares none."""
    levels = getattr(unwrap_model(model), "feature_levels", None)
    return levels() if callable(levels) else {}


def _declared_plan(
    student: dict[str, dict[str, int]], teacher: dict[str, dict[str, int]]
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Rule 0 on two declarations: ``[(student, teacher, reason)]`` of the same kind at the same stride, and
    every level left out with its reason."""
    chosen: list[tuple[str, str, str]] = []
    left_out: list[str] = []
    for kind in dict.fromkeys([*student, *teacher]):
        mine, theirs = student.get(kind, {}), teacher.get(kind, {})
        by_stride = {stride: address for address, stride in theirs.items()}
        for address, stride in mine.items():
            if stride in by_stride:
                chosen.append(
                    (address, by_stride[stride], f"the {kind} level at stride {stride} in both models")
                )
        for role, levels, other in (("student", mine, theirs), ("teacher", theirs, mine)):
            strides = set(other.values())
            left_out += [
                f"{role} {address!r} (stride {stride}): the other model has no {kind} level at this stride"
                for address, stride in levels.items()
                if stride not in strides
            ]
    return chosen, left_out


def _tapped_shapes(model: nn.Module, addresses: list[str], run: Callable[[nn.Module], Any]) -> list[Shape]:
    """The shape of each tapped feature in one run of ``model``."""
    taps = FeatureTaps(model, addresses)
    with taps.capture(stop_early=True) as features:
        run(model)
    return [tuple(features[address].shape) for address in addresses]


def auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> list[AutoPair]:
    """Dry-run both models on ``sample_input`` and return the pairs :func:`plan_pairs` chooses."""
    return plan_auto_pairs(student, teacher, sample_input, teacher_forward).pairs


def plan_declared_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> Pairing | None:
    """Rule 0: the levels both models declare (:func:`declared_levels`), paired kind by kind and by stride,
    with their shapes on ``sample_input``; None where either declares none or they share no stride."""
    levels = declared_levels(student), declared_levels(teacher)
    if not all(any(side.values()) for side in levels):
        return None
    chosen, left_out = _declared_plan(*levels)
    if not chosen:
        return None
    args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
    with _dry_run(student, teacher):
        s_shapes = _tapped_shapes(student, [s for s, _, _ in chosen], lambda m: m(*args))
        t_shapes = _tapped_shapes(teacher, [t for _, t, _ in chosen], lambda m: teacher_forward(m, *args))
    return Pairing(
        [AutoPair(s, t, shapes) for (s, t, _), shapes in zip(chosen, zip(s_shapes, t_shapes))],
        [why for _, _, why in chosen],
        left_out,
    )


@contextmanager
def _dry_run(*models: nn.Module) -> Iterator[None]:
    """Eval mode and no grad for the block; each model's mode is restored after it."""
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


def plan_auto_pairs(
    student: nn.Module,
    teacher: nn.Module,
    sample_input: Any,
    teacher_forward: Callable[..., Any],
) -> Pairing:
    """Dry-run both models on ``sample_input`` (eval mode, no grad) and pair them: the levels both declare
    (rule 0, :func:`plan_declared_pairs`), else the traced outputs by :func:`plan_pairs`, with reasons."""
    declared = plan_declared_pairs(student, teacher, sample_input, teacher_forward)
    if declared is not None:
        return declared
    args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
    with _dry_run(student, teacher):
        student_outputs = trace_outputs(student, lambda m: m(*args), include_unsafe=True)
        teacher_outputs = trace_outputs(teacher, lambda m: teacher_forward(m, *args), include_unsafe=True)
    return plan_pairs(student_outputs, teacher_outputs)
