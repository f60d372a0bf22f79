"""Orchestrating: the ``Distiller`` runs student and frozen teacher, aligns and compares their features."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..taps import FeatureTaps, unwrap_model
from .auto_pairs import auto_pairs
from .methods import Method, get_method

PairSpec = Sequence[str] | Mapping[str, Any]


@dataclass(frozen=True)
class Pair:
    """One distilled layer pair: student address → teacher address, compared by ``method``."""

    student: str
    teacher: str
    method: str

    @property
    def key(self) -> str:
        """The name of this pair's term in ``DistillOutput.losses``."""
        side = self.student if self.student == self.teacher else f"{self.student}->{self.teacher}"
        return f"{self.method}:{side}"


@dataclass
class DistillOutput:
    """What one distillation forward returns.

    Attributes:
        student: the student's own output, unchanged (logits, detection loss dict, segmentation dict, ...).
        loss: Σ over pairs of α_method · loss_pair, a scalar to add to the task loss.
        losses: the α-weighted term of each pair, keyed ``"method:layer"`` (they sum to ``loss``).
    """

    student: Any
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


def _as_args(inputs: Any) -> tuple:
    """A tuple is a list of positional arguments; anything else is the single argument."""
    return inputs if isinstance(inputs, tuple) else (inputs,)


def default_teacher_forward(teacher: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Call the teacher with exactly the student's arguments."""
    return teacher(*args, **kwargs)


def parse_pairs(pairs: Sequence[PairSpec], method: str) -> list[Pair]:
    """Normalise ``(s, t)``, ``(s, t, method)`` or ``{"student", "teacher", "method"}`` entries."""
    parsed = []
    for spec in pairs:
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"student", "teacher", "method"}
            if unknown or not {"student", "teacher"} <= set(spec):
                raise ValueError(f"pair {dict(spec)} needs keys 'student', 'teacher' and optionally 'method'")
            parsed.append(Pair(spec["student"], spec["teacher"], spec.get("method", method)))
        elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) in (2, 3):
            parsed.append(Pair(spec[0], spec[1], spec[2] if len(spec) == 3 else method))
        else:
            raise ValueError(f"pair {spec!r} must be (student_layer, teacher_layer[, method])")
    if not parsed:
        raise ValueError(
            "pairs is empty: name at least one (student_layer, teacher_layer) pair or use 'auto'"
        )
    for pair in parsed:
        get_method(pair.method)
    return parsed


def _check_alignable(pair: Pair, student: Any, teacher: Any, method: Method) -> None:
    """Raise a clear error for features that no transform can align."""
    for role, value in (("student", student), ("teacher", teacher)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{role} feature {getattr(pair, role)!r} is a {type(value).__name__}, not a tensor; "
                "add a selector such as '[0]' or '[out]' to pick one element"
            )
    s, t = tuple(student.shape), tuple(teacher.shape)
    where = f"pair {pair.student!r} -> {pair.teacher!r}"
    if len(s) != len(t):
        raise ValueError(
            f"{where}: student feature {s} and teacher feature {t} have different ranks and cannot be "
            "aligned; pair layers of the same kind (both feature maps, or both vectors)"
        )
    if s[0] != t[0]:
        raise ValueError(
            f"{where}: batch sizes differ ({s[0]} vs {t[0]}); both models must see the same batch"
        )
    if method.needs_maps and len(s) != 4:
        raise ValueError(f"{where}: method {method.name!r} needs (B, C, H, W) feature maps; got {s}")
    if len(s) == 3 and s[1] != t[1]:
        raise ValueError(f"{where}: token counts differ ({s[1]} vs {t[1]}); tokens cannot be resized")
    if len(s) not in (2, 3, 4):
        raise ValueError(f"{where}: features must have 2, 3 or 4 dimensions; got {s}")


class Distiller(nn.Module):
    """Wraps a trainable student and a frozen teacher; returns the student's output and the distillation loss.

    Args:
        student: the model being trained.
        teacher: the frozen teacher (kept in eval mode, ``requires_grad=False``, run under ``no_grad``;
            not a registered submodule, so it is absent from ``parameters()`` and ``state_dict()``).
        pairs: ``[(student_layer, teacher_layer[, method]), ...]`` with tap addresses (see
            :mod:`featdistill.taps.selectors`), or ``"auto"`` to pair the last feature of every spatial
            resolution both models have.
        method: the method of pairs that name none (see :mod:`featdistill.distiller.methods`).
        alpha: the loss weight: one float for all methods, or ``{method: alpha}``; None = method defaults.
        sample_input: an input both models accept (a tuple is unpacked into positional arguments); one dry
            run on it infers the feature shapes, so the transforms' parameters exist before the optimizer.
        options: per-method options, e.g. ``{"cwt": {"hidden_channels": 256}, "kd": {"tau": 2.0}}``.
        teacher_forward: ``f(teacher, *args, **kwargs)`` runs the teacher given the student's call arguments
            (default: the same call); use it when the teacher takes other inputs, e.g. a detector student gets
            ``(images, targets)`` but the teacher only ``images``.
        teacher_dtype: run the teacher under autocast in this dtype (e.g. ``torch.bfloat16``); features are
            cast back to the student's dtype for the loss.
        verbose: print the pairs chosen by ``pairs="auto"``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        pairs: Sequence[PairSpec] | str,
        method: str = "cwt",
        alpha: float | Mapping[str, float] | None = None,
        sample_input: Any = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        teacher_forward: Callable[..., Any] = default_teacher_forward,
        teacher_dtype: torch.dtype | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.student = student
        self._frozen = [teacher]  # a list, so the teacher is not registered as a submodule
        teacher.eval()
        teacher.requires_grad_(False)
        self.teacher_forward = teacher_forward
        self.teacher_dtype = teacher_dtype
        if sample_input is None:
            raise ValueError(
                "sample_input is required: one dry run on it infers feature shapes so that the transforms' "
                "parameters exist before you build the optimizer (e.g. torch.randn(2, 3, 224, 224))"
            )
        if isinstance(pairs, str):
            if pairs != "auto":
                raise ValueError(f"pairs must be a list of layer pairs or 'auto'; got {pairs!r}")
            found = auto_pairs(student, teacher, sample_input, teacher_forward)
            if verbose:
                print("featdistill: pairs='auto' chose " + ", ".join(f"{s}->{t}" for s, t, _ in found))
            pairs = [(s, t) for s, t, _ in found]
        self.pairs = parse_pairs(pairs, method)
        self.methods = {p.method: get_method(p.method) for p in self.pairs}
        self.alpha = self._resolve_alpha(alpha)
        self.options = self._resolve_options(options or {})
        self._student_taps = FeatureTaps(student, [p.student for p in self.pairs], role="student")
        self._teacher_taps = FeatureTaps(teacher, [p.teacher for p in self.pairs], role="teacher")
        self.transforms = self._build_transforms(sample_input)

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not a submodule: never in ``parameters()`` or ``state_dict()``)."""
        return self._frozen[0]

    def _resolve_alpha(self, alpha: float | Mapping[str, float] | None) -> dict[str, float]:
        if alpha is None:
            return {name: m.default_alpha for name, m in self.methods.items()}
        if isinstance(alpha, Mapping):
            missing = sorted(set(self.methods) - set(alpha))
            if missing:
                raise ValueError(f"alpha has no entry for method(s) {missing}; give one per method used")
            return {name: float(alpha[name]) for name in self.methods}
        return dict.fromkeys(self.methods, float(alpha))

    def _resolve_options(self, options: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        resolved = {}
        for name, method in self.methods.items():
            given = dict(options.get(name, {}))
            unknown = set(given) - set(method.defaults)
            if unknown:
                raise ValueError(
                    f"unknown option(s) {sorted(unknown)} for method {name!r}; valid: {sorted(method.defaults)}"
                )
            resolved[name] = {**method.defaults, **given}
        return resolved

    def _build_transforms(self, sample_input: Any) -> nn.ModuleList:
        """Dry run both models in eval mode (no BN update, no grad) and build one transform per pair."""
        args = _as_args(sample_input)
        was_training = self.student.training
        self.student.eval()
        try:
            with torch.no_grad():
                with self._student_taps.capture() as student_features:
                    self.student(*args)
                with self._teacher_taps.capture(stop_early=True) as teacher_features:
                    self.teacher_forward(self.teacher, *args)
        finally:
            self.student.train(was_training)
        reference = next(iter(self.student.parameters()), None)
        transforms = nn.ModuleList()
        for pair in self.pairs:
            s, t = student_features[pair.student], teacher_features[pair.teacher]
            method = self.methods[pair.method]
            _check_alignable(pair, s, t, method)
            transform = method.build_transform(tuple(s.shape), tuple(t.shape), self.options[pair.method])
            if reference is not None:
                transform = transform.to(device=reference.device, dtype=reference.dtype)
            transforms.append(transform)
        return transforms

    def train(self, mode: bool = True) -> Distiller:
        """Set the student and transforms' mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def _apply(self, fn: Callable, recurse: bool = True) -> Distiller:
        """``.to()``, ``.cuda()``, ``.half()``... apply to the teacher too, although it is not a submodule."""
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def forward(self, *args: Any, **kwargs: Any) -> DistillOutput:
        """Run the teacher (no grad, stopped after its last tapped layer), then the student (with grad).

        Teacher first: its short-lived activations are freed before the student's are kept for backward,
        which lowers the peak memory and, on CPU, more than halves the page faults of a step (measured
        ~10% faster).
        """
        teacher_features = self.teacher_features(*args, **kwargs)
        with self._student_taps.capture() as student_features:
            student_output = self.student(*args, **kwargs)
        losses = {}
        for pair, transform in zip(self.pairs, self.transforms):
            teacher_feature = teacher_features[pair.teacher]
            student_feature = student_features[pair.student]
            size = tuple(teacher_feature.shape[-2:]) if teacher_feature.dim() == 4 else None
            # The losses are sums over whole maps: in float16 they overflow (65504) long before
            # training ends, so they are computed in float32 whatever the autocast or model dtype.
            aligned = transform(student_feature, size).float()
            term = self.methods[pair.method].loss(aligned, teacher_feature.float(), self.options[pair.method])
            losses[pair.key] = self.alpha[pair.method] * term
        total = torch.stack(list(losses.values())).sum()
        return DistillOutput(student=student_output, loss=total, losses=losses)

    def teacher_features(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The teacher's tapped features for these inputs, detached, without running past the last tap."""
        device = next(iter(self.teacher.parameters()), torch.empty(0)).device
        autocast = torch.autocast(
            device.type, dtype=self.teacher_dtype, enabled=self.teacher_dtype is not None
        )
        with torch.no_grad(), autocast, self._teacher_taps.capture(stop_early=True) as features:
            self.teacher_forward(self.teacher, *args, **kwargs)
        return features

    def export(self) -> nn.Module:
        """The plain student: no hooks, no transforms, the same ``state_dict`` keys as the model you passed."""
        return unwrap_model(self.student)
