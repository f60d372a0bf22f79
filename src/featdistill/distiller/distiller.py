"""Orchestrating: the ``Distiller`` runs student and frozen teacher, aligns and compares their features."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..taps import FeatureTaps, SelectorError, unwrap_model
from .auto_pairs import plan_auto_pairs
from .balancer import AlphaSpec, LossBalancer, saved_balancer
from .methods import METHODS, Method, MethodSpec
from .pairs import Pair, PairSpec, parse_pairs_and_methods
from .teachers import (
    TeacherRun,
    default_teacher_forward,
    name_teachers,
    per_teacher,
    run_teachers,
    split_teacher,
    teacher_prefix,
)

STRICT_SHAPES = "strict_shapes"  # the one option of ``options`` that is not a method: shapes >2x apart fail
MAX_SIDE_RATIO = 2.0  # a pair's maps may differ this many times in height or width without a warning
LOSS_RATIO_RANGE = (1e-4, 1e3)  # a first distillation term outside this multiple of the task loss warns
DISTILL_STATE_FORMAT = "featdistill-distill-state-1"  # the format of ``Distiller.distill_state_dict()``


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


def _check_distinct(student: nn.Module, teacher: nn.Module) -> None:
    """Refuse a teacher that is the student, or shares parameters with it (freezing it would freeze both)."""
    if unwrap_model(student) is unwrap_model(teacher):
        raise ValueError(
            "student and teacher are the same module: the teacher is frozen, so the student would not train; "
            "pass a separate teacher (e.g. copy.deepcopy(model) of a trained one)"
        )
    shared = {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}
    if shared:
        names = [name for name, p in student.named_parameters() if id(p) in shared]
        raise ValueError(
            f"student and teacher share {len(names)} parameter(s) (e.g. {names[0]!r}): the frozen teacher "
            "would freeze them in the student too; give the teacher its own copy (copy.deepcopy)"
        )


def _check_not_meta(model: nn.Module, role: str) -> None:
    meta = next((name for name, p in model.named_parameters() if p.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"the {role} {type(model).__name__} has parameters on the meta device (e.g. {meta!r}): they have "
            "shapes but no values (a model built under torch.device('meta') or with empty weights); load its "
            "weights (e.g. model.to_empty(device='cpu') then load_state_dict) before distilling"
        )


def _rng_devices(module: nn.Module) -> list[int]:
    """The CUDA devices whose RNG ``fork_rng`` must save for ``module`` (none on CPU)."""
    return sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})


def _check_alignable(pair: Pair, student: Any, teacher: Any, method: Method) -> None:
    """Raise a clear error for features that no transform can align."""
    where = f"pair {pair.student!r} -> {pair.teacher!r}"
    for role, value in (("student", student), ("teacher", teacher)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{where}: the {role} feature {getattr(pair, role)!r} is a {type(value).__name__}, not a "
                "tensor; use a selector such as '[0]' or '[out]' that picks a tensor element"
            )
        if value.dim() < 2:
            raise ValueError(
                f"{where}: the {role} feature {getattr(pair, role)!r} has shape {tuple(value.shape)}, not "
                "(batch, ...) features (a scalar or a vector, e.g. a loss or a count); tap another element"
            )
    s, t = tuple(student.shape), tuple(teacher.shape)
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


def _check_sides(pair: Pair, student: torch.Tensor, teacher: torch.Tensor, strict: bool) -> None:
    """Warn (or, with ``strict``, refuse) when a pair's maps differ more than 2x in height or width."""
    if student.dim() != 4:
        return
    s, t = tuple(student.shape), tuple(teacher.shape)
    ratio = max(max(a, b) / min(a, b) for a, b in zip(s[2:], t[2:]))
    if ratio <= MAX_SIDE_RATIO:
        return
    message = (
        f"pair {pair.student!r} -> {pair.teacher!r}: the student map {s} and the teacher map {t} differ "
        f"{ratio:g}x in height or width; the student map is resized to the teacher's, so the two see the "
        "image at different strides: pair layers of the same stride"
    )
    if strict:
        raise ValueError(f"{message} (distill.options.{STRICT_SHAPES} is set)")
    warnings.warn(
        f"{message}, or set distill.options.{STRICT_SHAPES}: true to refuse such pairs", stacklevel=3
    )


class Distiller(nn.Module):
    """Wraps a trainable student and frozen teachers; returns the student's output and the distillation loss.

    Args:
        student: the model being trained.
        teacher: the frozen teacher (kept in eval mode, ``requires_grad=False``, run under ``no_grad``;
            not a registered submodule, so it is absent from ``parameters()`` and ``state_dict()``).
        pairs: ``[(student_layer, teacher_layer[, method]), ...]`` with tap addresses (see
            :mod:`featdistill.taps.selectors`), or ``"auto"`` to pair the last feature of every spatial
            resolution both models have (with several teachers: the student with each of them). A pair's
            method is a registered name or an object: a :class:`featdistill.Method`, or an ``nn.Module``
            loss ``f(student_feature, teacher_feature)`` → scalar, keyed in ``alpha`` by its ``name``
            attribute or class name; a loss module's parameters train with the student (``criteria``).
        method: the method of pairs that name none (see :mod:`featdistill.distiller.methods`).
        alpha: the loss weight: one float for all methods, or ``{method: alpha}``; None = method defaults;
            ``"auto"`` (for all methods or as a dict value) = set by :meth:`calibrate_alpha` before training.
            With several teachers each (teacher, method) has its own α (keyed ``"cnn:cwt"``), given per
            method (``{"cwt": ...}``), per teacher (``{"cnn": ...}``, or ``{"cnn": {"cwt": ...}}``) or per
            both (``{"cnn:cwt": ...}``); the most specific entry wins, and ``"auto"`` calibrates each term.
            The α live in ``d.balancer`` (a :class:`LossBalancer`, saved and restored with checkpoints).
        sample_input: an input both models accept (a tuple is unpacked into positional arguments); one dry
            run on it infers the feature shapes, so the transforms' parameters exist before the optimizer.
        options: per-method options, e.g. ``{"cwt": {"hidden_channels": 256}, "kd": {"tau": 2.0}}``, and
            ``"strict_shapes": True`` to refuse (not only warn about) pairs whose maps differ >2x in a side.
        teacher_forward: ``f(teacher, *args, **kwargs)`` runs the teacher given the student's call arguments
            (default: the same call); use it when the teacher takes other inputs, e.g. a detector student gets
            ``(images, targets)`` but the teacher only ``images``.
        teacher_dtype: run the teacher under autocast in this dtype (e.g. ``torch.bfloat16``). Without it the
            teacher runs in its own dtype and on its own device (a float64 or bf16 teacher, a teacher on
            another GPU): the inputs are cast to them, and the losses are computed in float32 on the student's
            device. A teacher on the meta device (no values) is refused.
        auto_ratio: the ratio an ``"auto"`` α is calibrated to: the term starts at ``auto_ratio`` × the task
            loss (None: each method's own ``auto_ratio``).
        verbose: print the pairs chosen by ``pairs="auto"``.
        teachers: several frozen teachers instead of ``teacher``, ``{name: model}``; each pair then names
            its teacher's layer as ``"name:layer"`` (``("layer4", "cnn:layer4")``). Each teacher runs on its
            own, stopped after its own last tapped layer; ``teacher_forward`` and ``teacher_dtype`` may be
            ``{name: value}`` mappings (teachers not named get the default). The loss is the sum of each
            teacher's terms, each as it would be with that teacher alone.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        pairs: Sequence[PairSpec] | str | None = None,
        method: MethodSpec = "cwt",
        alpha: AlphaSpec = None,
        sample_input: Any = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        teacher_forward: Callable[..., Any] | Mapping[str, Callable[..., Any]] = default_teacher_forward,
        teacher_dtype: torch.dtype | Mapping[str, torch.dtype | None] | None = None,
        verbose: bool = True,
        teachers: Mapping[str, nn.Module] | None = None,
        auto_ratio: float | None = None,
    ) -> None:
        super().__init__()
        frozen = name_teachers(teacher, teachers, reserved=list(METHODS))
        for module in frozen.values():
            _check_distinct(student, module)
        _check_not_meta(student, "student")
        for module in frozen.values():
            _check_not_meta(module, "teacher")
        self.student = student
        for module in frozen.values():
            module.eval()
            module.requires_grad_(False)
        names = list(frozen)
        forwards = per_teacher(teacher_forward, names, default_teacher_forward, "teacher_forward")
        dtypes = per_teacher(teacher_dtype, names, None, "teacher_dtype")
        if sample_input is None:
            raise ValueError(
                "sample_input is required: one dry run on it infers feature shapes so that the transforms' "
                "parameters exist before you build the optimizer (e.g. torch.randn(2, 3, 224, 224))"
            )
        if pairs is None:
            raise ValueError("pairs is required: a list of (student_layer, teacher_layer) pairs, or 'auto'")
        if isinstance(pairs, str):
            if pairs != "auto":
                raise ValueError(f"pairs must be a list of layer pairs or 'auto'; got {pairs!r}")
            pairs = [
                (found.student, teacher_prefix(name) + found.teacher)
                for name, module in frozen.items()
                for found in plan_auto_pairs(student, module, sample_input, forwards[name]).pairs
            ]
            if verbose:
                print("featdistill: pairs='auto' chose " + ", ".join(f"{s}->{t}" for s, t in pairs))
        parsed, self.methods = parse_pairs_and_methods(pairs, method)
        clash = sorted(set(self.methods) & set(names))
        if clash:
            raise ValueError(f"{clash} name both a teacher and a method: alpha could not tell them apart")
        self.pairs = [replace(pair, teacher_name=split_teacher(pair.teacher, names)[0]) for pair in parsed]
        #: The loss modules given as methods, by name: trained with the student, saved in ``state_dict()``.
        self.criteria = nn.ModuleDict(
            {name: m.module for name, m in self.methods.items() if m.module is not None}
        )
        self.balancer = LossBalancer(alpha, self.pairs, self.methods, auto_ratio)
        self.strict_shapes = self._strict_shapes(options or {})
        self.options = self._resolve_options(options or {})
        self._student_taps = FeatureTaps(student, [p.student for p in self.pairs], role="student")
        self._teacher_runs = [
            TeacherRun(name, module, forwards[name], dtypes[name], self._teacher_layers(name))
            for name, module in frozen.items()
        ]
        self.transforms = self._build_transforms(sample_input)
        reference = next(iter(student.parameters()), None)
        if reference is not None:
            self.criteria.to(reference.device)  # the losses run where the student's features are

    def _teacher_layers(self, name: str) -> list[str]:
        """The layers tapped in teacher ``name`` (without its prefix); a teacher no pair uses is refused."""
        layers = [split_teacher(p.teacher, [name])[1] for p in self.pairs if p.teacher_name == name]
        if not layers:
            raise ValueError(f"teacher {name!r} is in teachers but no pair names it (as '{name}:layer')")
        return layers

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not a submodule: never in ``parameters()`` or ``state_dict()``)."""
        if len(self._teacher_runs) > 1:
            raise RuntimeError(
                f"this Distiller has several teachers {sorted(self.teachers)}: use d.teachers[name]"
            )
        return self._teacher_runs[0].module

    @property
    def teachers(self) -> dict[str, nn.Module]:
        """The frozen teachers by name (``""`` for the one teacher given as ``teacher=``)."""
        return {run.name: run.module for run in self._teacher_runs}

    @property
    def teacher_runs(self) -> list[TeacherRun]:
        """How each teacher runs (module, forward, dtype, tapped layers); :class:`SharedTeacher` reads it."""
        return list(self._teacher_runs)

    @property
    def alpha(self) -> Mapping[str, float | None]:
        """Each α key's weight, read-only (None: ``"auto"``, not calibrated yet); see :attr:`balancer`."""
        return self.balancer.alpha

    @torch.no_grad()
    def measure_losses(
        self,
        batches: Iterable[Any],
        task_loss: Callable[[Any, Any], torch.Tensor],
        call: Callable[[Any], tuple[tuple, dict]] = lambda batch: ((batch[0],), {}),
    ) -> dict[str, float]:
        """Mean task loss (key ``"task"``) and mean unweighted loss of each α key (method) over ``batches``.

        Runs in training mode (a detector gives its losses only then) without changing anything: BatchNorm
        statistics and the RNG states are restored afterwards, and no gradient is taken.
        """
        buffers = [(buffer, buffer.clone()) for buffer in self.student.buffers()]
        was_training = self.training
        sums = dict.fromkeys(["task", *self.balancer.alpha], 0.0)
        count = 0
        self.train()
        try:
            with torch.random.fork_rng(devices=_rng_devices(self.student)):
                for batch in batches:
                    args, kwargs = call(batch)
                    student_output, terms = self._forward_terms(args, kwargs, None)
                    sums["task"] += float(task_loss(student_output, batch))
                    for pair, term in zip(self.pairs, terms):
                        sums[pair.alpha_key] += float(term)
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
        call: Callable[[Any], tuple[tuple, dict]] = lambda batch: ((batch[0],), {}),
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Choose α for the ``"auto"`` keys: each term starts at its ratio (``auto_ratio``) × the task loss.

        The one home of ``alpha: auto``: the featdistill Trainer, the Lightning module and the Hugging Face
        trainer all call it.

        Args:
            batches: a few training batches (e.g. the first 4 of the loader).
            task_loss: ``f(student_output, batch)`` → the scalar task loss (e.g. cross-entropy).
            call: ``f(batch)`` → ``(args, kwargs)`` of the model call (default: ``batch[0]`` alone).
            reduce: under DDP, ``f(tensor)`` → its element-wise mean over all processes (e.g. Lightning's
                ``strategy.reduce(t, reduce_op="mean")``), so that every process chooses the same α from the
                measured losses of all; None: this process's own measurement.

        Returns:
            the chosen ``{key: alpha}`` (also set in :attr:`balancer`).
        """
        measured = self.measure_losses(batches, task_loss, call)
        if reduce is not None:
            names = sorted(measured)
            reference = next(iter(self.student.parameters()), None)
            device = reference.device if reference is not None else torch.device("cpu")
            local = torch.tensor([measured[name] for name in names], dtype=torch.float64, device=device)
            measured = dict(zip(names, reduce(local).tolist()))
        return self.balancer.calibrate(measured)

    def distill_state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs of the distillation beyond the student's weights, to resume it exactly.

        ``{"format", "transforms": state dict, "criteria": state dict of the loss modules, "balancer": α state}``;
        the teacher is frozen and never saved. The Trainer, the Lightning module and the Hugging Face trainer
        all save this and restore it with :meth:`load_distill_state_dict`.
        """
        return {
            "format": DISTILL_STATE_FORMAT,
            "transforms": self.transforms.state_dict(),
            "criteria": self.criteria.state_dict(),
            "balancer": self.balancer.state_dict(),
        }

    def load_distill_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`distill_state_dict`'s transforms, loss modules and α; other keys are ignored.

        Older states are read as well: one without ``format`` or ``criteria`` (before loss modules), with α
        alone under ``alpha`` (before the balancer), or without ``transforms`` (a Lightning checkpoint, whose
        transforms are in the module's own state dict). What a state lacks is kept as it is.
        """
        found = state.get("format", DISTILL_STATE_FORMAT)
        if found != DISTILL_STATE_FORMAT:
            raise ValueError(
                f"distillation state format {found!r} is not {DISTILL_STATE_FORMAT!r}: written by a newer "
                "featdistill? upgrade featdistill to read it"
            )
        if "transforms" in state:
            self.transforms.load_state_dict(state["transforms"])
        if "criteria" in state:
            self.criteria.load_state_dict(state["criteria"])
        self.balancer.load_state_dict(saved_balancer(state))

    @staticmethod
    def _strict_shapes(options: Mapping[str, Any]) -> bool:
        value = options.get(STRICT_SHAPES, False)
        if not isinstance(value, bool):
            raise TypeError(
                f"options[{STRICT_SHAPES!r}] (distill.options.{STRICT_SHAPES}) must be true or false, got {value!r}"
            )
        return value

    def _resolve_options(self, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Each used method's options over its defaults; keys that are neither a method nor
        ``strict_shapes`` are refused, as are option names the method does not have."""
        known = set(METHODS) | set(self.methods)
        unknown = sorted(set(options) - known - {STRICT_SHAPES})
        if unknown:
            raise ValueError(
                f"unknown distillation option(s) {unknown}: options are keyed by method "
                f"({sorted(known)}) or are {STRICT_SHAPES!r}"
            )
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
            with torch.no_grad(), self._student_taps.capture() as student_features:
                self.student(*args)
            teacher_features = self.teacher_features(*args)
        except SelectorError as err:
            raise ValueError(f"{self._pair_of(str(err))}: {err}") from None
        finally:
            self.student.train(was_training)
        reference = next(iter(self.student.parameters()), None)
        transforms = nn.ModuleList()
        for pair in self.pairs:
            s, t = student_features[pair.student], teacher_features[pair.teacher]
            method = self.methods[pair.method]
            _check_alignable(pair, s, t, method)
            _check_sides(pair, s, t, self.strict_shapes)
            transform = method.build_transform(tuple(s.shape), tuple(t.shape), self.options[pair.method])
            if reference is not None:
                transform = transform.to(device=reference.device, dtype=reference.dtype)
            transforms.append(transform)
        return transforms

    def _pair_of(self, message: str) -> str:
        """``pair 's' -> 't'`` of the first pair whose student or teacher address ``message`` quotes."""
        for pair in self.pairs:
            if repr(pair.student) in message or repr(pair.teacher) in message:
                return f"pair {pair.student!r} -> {pair.teacher!r}"
        return "a pair"

    def warn_loss_scale(self, terms: Mapping[str, float]) -> None:
        """Warn about a distillation term more than 1000x or less than 1e-4x the task loss (one drowns the
        task, the other does nothing). ``terms``: the step's task terms and ``DistillOutput.losses``.

        The terms of a method whose α is 0 (switched off) are not checked.
        """
        task_loss = sum(value for key, value in terms.items() if key not in {p.key for p in self.pairs})
        low, high = LOSS_RATIO_RANGE
        alpha = self.balancer.alpha
        for pair in self.pairs:
            term = terms.get(pair.key)
            if term is None or alpha[pair.alpha_key] == 0 or not task_loss > 0:
                continue
            ratio = term / task_loss
            if not low <= ratio <= high:
                effect = "drowns the task loss" if ratio > high else "is too small to have an effect"
                warnings.warn(
                    f"the first {pair.key} term is {term:.3g}, {ratio:.3g}x the task loss {task_loss:.3g}: it "
                    f"{effect} (alpha {alpha[pair.alpha_key]:g}); set distill.alpha: auto to start the term "
                    "at a fixed multiple of the task loss",
                    stacklevel=2,
                )

    def train(self, mode: bool = True) -> Distiller:
        """Set the student and transforms' mode; the teachers always stay in eval mode."""
        super().train(mode)
        for run in self._teacher_runs:
            run.module.eval()
        return self

    def _apply(self, fn: Callable, recurse: bool = True) -> Distiller:
        """``.to()``, ``.cuda()``, ``.half()``... apply to the teachers too, although they are not submodules."""
        super()._apply(fn, recurse)
        for run in self._teacher_runs:
            run.module._apply(fn, recurse)
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
        weights = self.balancer.weights()
        student_output, terms = self._forward_terms(args, kwargs, teacher_features)
        losses = {
            pair.key: weights[pair.alpha_key] * term for pair, term in zip(self.pairs, terms, strict=True)
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
            student_feature = student_features[pair.student]
            teacher_feature = teacher_features[pair.teacher].to(student_feature.device)
            size = tuple(teacher_feature.shape[-2:]) if teacher_feature.dim() == 4 else None
            # The losses are sums over whole maps: in float16 they overflow (65504) long before
            # training ends, so they are computed in float32 whatever the autocast or model dtype.
            aligned = transform(student_feature, size).float()
            term = self.methods[pair.method].loss(aligned, teacher_feature.float(), self.options[pair.method])
            if not isinstance(term, torch.Tensor) or term.dim() != 0:
                shape = tuple(term.shape) if isinstance(term, torch.Tensor) else type(term).__name__
                raise ValueError(
                    f"the loss of method {pair.method!r} on pair {pair.student!r} -> {pair.teacher!r} returned "
                    f"{shape}, not a scalar tensor: reduce it (e.g. .mean() or .sum() / batch size)"
                )
            terms.append(term)
        return student_output, terms

    def teacher_features(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Each teacher's tapped features for these inputs, detached, none run past its own last tap."""
        return run_teachers(self._teacher_runs, args, kwargs)

    def export(self) -> nn.Module:
        """The plain student: no hooks, no transforms, the same ``state_dict`` keys as the model you passed."""
        return unwrap_model(self.student)
