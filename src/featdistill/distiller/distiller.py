"""Orchestrating: the ``Distiller`` runs student and frozen teacher, aligns and compares their features."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..taps import FeatureTaps, unwrap_model
from .auto_pairs import auto_pairs
from .methods import Method, get_method

PairSpec = Sequence[str] | Mapping[str, Any]
AlphaSpec = float | str | Mapping[str, float | str] | None


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


def _alpha_value(value: float | str, method: str) -> float | None:
    """A number, or None for ``"auto"``."""
    if value == "auto":
        return None
    if isinstance(value, (str, bool)):
        raise ValueError(f"alpha of method {method!r} must be a number or 'auto', got {value!r}")
    return float(value)


def _rng_devices(module: nn.Module) -> list[int]:
    """The CUDA devices whose RNG ``fork_rng`` must save for ``module`` (none on CPU)."""
    return sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})


def default_teacher_forward(teacher: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Call the teacher with exactly the student's arguments."""
    return teacher(*args, **kwargs)


def run_teacher(
    teacher: nn.Module,
    taps: FeatureTaps,
    teacher_forward: Callable[..., Any],
    teacher_dtype: torch.dtype | None,
    args: tuple,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The tapped teacher features for these inputs: no grad, optional autocast, stopped after the last tap."""
    device = next(iter(teacher.parameters()), torch.empty(0)).device
    autocast = torch.autocast(device.type, dtype=teacher_dtype, enabled=teacher_dtype is not None)
    with torch.no_grad(), autocast, taps.capture(stop_early=True) as features:
        teacher_forward(teacher, *args, **kwargs)
    return features


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
        alpha: the loss weight: one float for all methods, or ``{method: alpha}``; None = method defaults;
            ``"auto"`` (for all methods or as a dict value) = set by :meth:`calibrate_alpha` before training.
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
        alpha: AlphaSpec = None,
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

    def _resolve_alpha(self, alpha: AlphaSpec) -> dict[str, float | None]:
        """One α per method used; None marks a method whose α is ``"auto"`` and not calibrated yet."""
        if alpha is None:
            return {name: m.default_alpha for name, m in self.methods.items()}
        if isinstance(alpha, Mapping):
            missing = sorted(set(self.methods) - set(alpha))
            if missing:
                raise ValueError(f"alpha has no entry for method(s) {missing}; give one per method used")
            return {name: _alpha_value(alpha[name], name) for name in self.methods}
        return {name: _alpha_value(alpha, name) for name in self.methods}

    @property
    def uncalibrated(self) -> list[str]:
        """The methods whose α is ``"auto"`` and still waits for :meth:`calibrate_alpha`."""
        return [name for name, value in self.alpha.items() if value is None]

    def set_alpha(self, alpha: Mapping[str, float]) -> None:
        """Set the α of the named methods (e.g. restored from a checkpoint)."""
        unknown = sorted(set(alpha) - set(self.alpha))
        if unknown:
            raise ValueError(
                f"alpha given for method(s) {unknown} that no pair uses; used: {sorted(self.alpha)}"
            )
        self.alpha.update({name: float(value) for name, value in alpha.items()})

    @torch.no_grad()
    def measure_losses(
        self,
        batches: Iterable[Any],
        task_loss: Callable[[Any, Any], torch.Tensor],
        call: Callable[[Any], tuple[tuple, dict]] = lambda batch: ((batch[0],), {}),
    ) -> dict[str, float]:
        """Mean task loss (key ``"task"``) and mean unweighted loss of each method over ``batches``.

        Runs in training mode (a detector gives its losses only then) without changing anything: BatchNorm
        statistics and the RNG states are restored afterwards, and no gradient is taken.
        """
        buffers = [(buffer, buffer.clone()) for buffer in self.student.buffers()]
        was_training = self.training
        sums = dict.fromkeys(["task", *self.methods], 0.0)
        count = 0
        self.train()
        try:
            with torch.random.fork_rng(devices=_rng_devices(self.student)):
                for batch in batches:
                    args, kwargs = call(batch)
                    student_output, terms = self._forward_terms(args, kwargs, None)
                    sums["task"] += float(task_loss(student_output, batch))
                    for pair, term in zip(self.pairs, terms):
                        sums[pair.method] += float(term)
                    count += 1
        finally:
            for buffer, saved in buffers:
                buffer.copy_(saved)
            self.train(was_training)
        if count == 0:
            raise ValueError("measure_losses got no batches; give at least one training batch")
        return {name: total / count for name, total in sums.items()}

    def calibrate_alpha(
        self,
        batches: Iterable[Any],
        task_loss: Callable[[Any, Any], torch.Tensor],
        ratio: float | None = None,
        call: Callable[[Any], tuple[tuple, dict]] = lambda batch: ((batch[0],), {}),
    ) -> dict[str, float]:
        """Choose α for the ``"auto"`` methods: each method's term starts at ``ratio`` × the task loss.

        Args:
            batches: a few training batches (e.g. the first 4 of the loader).
            task_loss: ``f(student_output, batch)`` → the scalar task loss (e.g. cross-entropy).
            ratio: the wanted distillation-to-task loss ratio at the start of training (None: each method's
                ``auto_ratio`` from the method table).
            call: ``f(batch)`` → ``(args, kwargs)`` of the model call (default: ``batch[0]`` alone).

        Returns:
            the chosen ``{method: alpha}`` (also set on the distiller).
        """
        return self.set_auto_alpha(self.measure_losses(batches, task_loss, call), ratio)

    def set_auto_alpha(self, measured: Mapping[str, float], ratio: float | None = None) -> dict[str, float]:
        """α = ratio · task loss / method loss for each uncalibrated method, from ``measure_losses``."""
        if ratio is not None and not ratio > 0:
            raise ValueError(f"the auto ratio must be positive, got {ratio}")
        chosen = {}
        for name in self.uncalibrated:
            task, raw = measured["task"], measured[name]
            if not (math.isfinite(task) and math.isfinite(raw) and raw > 0 and task > 0):
                raise ValueError(
                    f"alpha 'auto' cannot be calibrated for method {name!r}: task loss {task:.4g}, {name} loss "
                    f"{raw:.4g} on the first batches; give distill.alpha a number instead"
                )
            chosen[name] = (ratio or self.methods[name].auto_ratio) * task / raw
        self.set_alpha(chosen)
        return chosen

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

    def forward(
        self, *args: Any, teacher_features: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> DistillOutput:
        """Run the teacher (no grad, stopped after its last tapped layer), then the student (with grad).

        Teacher first: its short-lived activations are freed before the student's are kept for backward,
        which lowers the peak memory and, on CPU, more than halves the page faults of a step (measured
        ~10% faster). ``teacher_features``, from :meth:`teacher_features` on the same inputs, skips the teacher
        forward: several students trained on one batch then share one teacher pass.
        """
        pending = self.uncalibrated
        if pending:
            raise RuntimeError(
                f"alpha 'auto' of method(s) {pending} is not calibrated yet: call calibrate_alpha(batches, "
                "task_loss) once before training, or give alpha a number"
            )
        student_output, terms = self._forward_terms(args, kwargs, teacher_features)
        losses = {
            pair.key: self.alpha[pair.method] * term for pair, term in zip(self.pairs, terms, strict=True)
        }
        total = torch.stack(list(losses.values())).sum()
        return DistillOutput(student=student_output, loss=total, losses=losses)

    def _forward_terms(
        self, args: tuple, kwargs: dict, teacher_features: Mapping[str, Any] | None
    ) -> tuple[Any, list[torch.Tensor]]:
        """The student's output and the unweighted loss of each pair, in float32."""
        if teacher_features is None:
            teacher_features = self.teacher_features(*args, **kwargs)
        with self._student_taps.capture() as student_features:
            student_output = self.student(*args, **kwargs)
        terms = []
        for pair, transform in zip(self.pairs, self.transforms):
            teacher_feature = teacher_features[pair.teacher]
            student_feature = student_features[pair.student]
            size = tuple(teacher_feature.shape[-2:]) if teacher_feature.dim() == 4 else None
            # The losses are sums over whole maps: in float16 they overflow (65504) long before
            # training ends, so they are computed in float32 whatever the autocast or model dtype.
            aligned = transform(student_feature, size).float()
            terms.append(
                self.methods[pair.method].loss(aligned, teacher_feature.float(), self.options[pair.method])
            )
        return student_output, terms

    def teacher_features(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The teacher's tapped features for these inputs, detached, without running past the last tap."""
        return run_teacher(
            self.teacher, self._teacher_taps, self.teacher_forward, self.teacher_dtype, args, kwargs
        )

    def export(self) -> nn.Module:
        """The plain student: no hooks, no transforms, the same ``state_dict`` keys as the model you passed."""
        return unwrap_model(self.student)
