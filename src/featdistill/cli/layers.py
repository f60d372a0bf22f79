"""``featdistill layers``: the tappable layers of student and teacher, the auto pairs (and why), the tapped FLOPs.

One dry run per model on the task's ``sample_input`` lists every submodule output with its shape (the
same trace ``pairs: auto`` uses); FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products), once for the whole forward and once up to the last tapped layer. The
pairs are then checked by building the ``Distiller`` as ``train`` does (``featdistill.run.build_model``):
each pair it refuses is listed with its reason, and the command fails as ``train`` would.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .arguments import add_command, add_config_args

if TYPE_CHECKING:  # torch is imported when the command runs, not when the CLI starts
    from torch import nn

    from ..distiller.auto_pairs import Pairing


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``layers`` on the CLI's subparsers."""
    layers = add_command(
        sub,
        "layers",
        "List the tappable layers of student and teacher, the pairs 'auto' chooses and the FLOPs.",
        "configs/classification/cifar10_cpu_cwt.yaml",
        "Build the config's student and teacher, run each once on the task's sample input and list every "
        "submodule output with its shape, the pairs that 'distill.pairs: auto' would choose, the pairs the "
        "config distills and the share of each model's FLOPs up to its last tapped layer.",
    )
    add_config_args(layers)


@dataclass
class Traced:
    """One model's dry run: its outputs, its FLOPs, and the FLOPs up to its last tapped layer."""

    role: str
    name: str
    outputs: list[Any]  # LayerOutput, unsafe ones included
    flops: int
    tapped: list[str]
    tapped_flops: int = 0


def _count_flops(forward: Callable[[], object]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops()


def trace(role: str, name: str, model: nn.Module, run: Callable[[nn.Module], object]) -> Traced:
    """Dry-run ``run(model)`` once in eval mode without grad: outputs with shapes, and the total FLOPs."""
    from ..taps import trace_outputs

    model.eval()
    found: list[Any] = []
    flops = _count_flops(lambda: found.extend(trace_outputs(model, run, include_unsafe=True)))
    return Traced(role, name, found, flops, [])


def count_tapped_flops(traced: Traced, model: nn.Module, run: Callable[[nn.Module], object]) -> None:
    """The FLOPs of ``run(model)`` stopped after the last tapped layer (what the teacher costs per step)."""
    from ..taps import FeatureTaps

    taps = FeatureTaps(model, traced.tapped, role=traced.role)

    def forward() -> None:
        with taps.capture(stop_early=True):
            run(model)

    traced.tapped_flops = _count_flops(forward)


def _flops(value: float) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} FLOPs"


def _describe(sample: Any) -> str:
    if hasattr(sample, "shape"):
        return str(tuple(sample.shape))
    if isinstance(sample, (list, tuple)):
        return "[" + ", ".join(_describe(item) for item in sample) + "]"
    return type(sample).__name__


def format_layers(traced: Traced, sample: Any) -> list[str]:
    """The table of one model: each output's name, shape and, for unsafe ones, why it cannot be tapped."""
    lines = [
        f"{traced.role}: {traced.name}, {_flops(traced.flops)} on the sample input {_describe(sample)}",
    ]
    width = max((len(out.name) for out in traced.outputs), default=5)
    lines.append(f"  {'layer':<{width}}  output shape")
    for out in traced.outputs:
        note = f"  (not tappable: {out.unsafe})" if out.unsafe else ""
        lines.append(f"  {out.name:<{width}}  {tuple(out.shape)}{note}")
    return lines


def _share(traced: Traced) -> str:
    share = 100.0 * traced.tapped_flops / traced.flops if traced.flops else 100.0
    return f"{traced.role} {share:.1f}% ({_flops(traced.tapped_flops)} of {_flops(traced.flops)})"


def format_pairs(
    auto: Pairing | None, configured: Sequence[Any], source: str, sides: list[Traced]
) -> list[str]:
    """The pairs ``auto`` would choose and why, what it left out, the pairs distilled, the tapped FLOP shares."""
    if auto is None:
        lines = ["pairs 'auto' would choose: none (no resolution or token count shared outside the heads)"]
    else:
        lines = ["pairs 'auto' would choose: " + ", ".join(f"{p.student}->{p.teacher}" for p in auto.pairs)]
        lines += [f"  {p.student}->{p.teacher}: {why}" for p, why in zip(auto.pairs, auto.reasons)]
        lines += ["  left out:", *(f"    {why}" for why in auto.left_out)] if auto.left_out else []
    return [
        *lines,
        f"pairs distilled ({source}): "
        + ", ".join(f"{p.student}->{p.teacher} [{p.method}]" for p in configured),
        "tapped share of FLOPs (the forward up to the last tapped layer, where the teacher stops): "
        + ", ".join(_share(side) for side in sides),
    ]


def refused_pairs(cfg: Any, task: Any, teachers: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """``[(pair, reason)]`` of every pair that building the run's ``Distiller`` refuses (empty: none), by
    the code path ``train`` takes; an error that names no pair is one entry with the pair ``""``."""
    import contextlib
    import io

    import torch

    from ..run import build_model

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # 'auto' pairs: listed above already
            build_model(cfg, task, torch.device("cpu"), teachers=teachers)
    except (ValueError, TypeError) as err:
        found = getattr(err, "pair_problems", None)
        if found is None:
            return [("", str(err).strip().splitlines()[0])]
        return [(f"{pair.student}->{pair.teacher}", message) for pair, message in found]
    return []


def run(args: argparse.Namespace) -> None:
    from ..config import load_config
    from ..distiller.auto_pairs import plan_declared_pairs, plan_pairs
    from ..distiller.pairs import parse_pairs
    from ..distiller.teachers import teacher_prefix
    from ..run import build_teachers, get_task

    cfg = load_config(args.config, args.overrides)
    task = get_task(cfg)
    sample = task.sample_input()
    inputs = sample if isinstance(sample, tuple) else (sample,)
    teacher_forward = task.teacher_forward

    def student_run(model: nn.Module) -> object:
        return model(*inputs)

    def teacher_run(model: nn.Module) -> object:
        return teacher_forward(model, *inputs)

    student = task.build_student()
    traced_student = trace("student", f"{cfg.model.student} ({type(student).__name__})", student, student_run)
    lines = format_layers(traced_student, sample)
    if not cfg.model.distilled:
        print("\n".join([*lines, "no model.teacher in the config: no pairs"]))
        return
    teachers = build_teachers(task)
    d = cfg.distill
    configured = None if d.pairs in (None, "auto") else parse_pairs(d.pairs, d.method)
    for name, teacher in teachers.items():
        role = f"teacher {name!r}" if name else "teacher"
        spec = cfg.model.teacher_spec(name or None)
        traced = trace(role, f"{spec.model} ({type(teacher).__name__})", teacher, teacher_run)
        lines += ["", *format_layers(traced, sample), ""]
        auto = plan_declared_pairs(student, teacher, sample, teacher_forward)
        if auto is None:
            try:
                auto = plan_pairs(traced_student.outputs, traced.outputs)
            except ValueError:
                auto = None  # no shared resolution: 'auto' would fail with that message
        prefix = teacher_prefix(name)
        if configured is not None:
            mine, source = [p for p in configured if p.teacher.startswith(prefix)], "distill.pairs"
        else:
            if d.pairs is None:
                pairs, source = (
                    task.default_pairs(student, teacher),
                    "the task's default, distill.pairs is unset",
                )
            else:
                pairs, source = (
                    [(p.student, p.teacher) for p in auto.pairs] if auto else [],
                    "distill.pairs: auto",
                )
            mine = parse_pairs([(s, prefix + t) for s, t, *_ in pairs], d.method)
        traced_student.tapped = [p.student for p in mine]
        traced.tapped = [p.teacher.removeprefix(prefix) for p in mine]
        count_tapped_flops(traced_student, student, student_run)
        count_tapped_flops(traced, teacher, teacher_run)
        lines += format_pairs(auto, mine, source, [traced_student, traced])
    refused = refused_pairs(cfg, task, teachers)
    if refused:
        lines += ["", "pairs train refuses (building the Distiller):"]
        lines += [f"  {pair}: {reason}" if pair else f"  {reason}" for pair, reason in refused]
    print("\n".join(lines))
    if refused:
        raise ValueError(
            f"{len(refused)} pair(s) of this config cannot be distilled (listed above); train refuses them too"
        )
