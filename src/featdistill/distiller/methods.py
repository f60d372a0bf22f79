"""The distillation methods: for each name, how to build its transform and which loss compares.

| method       | transform (student → teacher shape)           | loss                                  | default α | options                  |
|--------------|-----------------------------------------------|---------------------------------------|-----------|--------------------------|
| `cwt`        | 1x1 conv C_s→C_h, ReLU, 1x1 conv C_h→C_t      | Σ (T(F_s) − F_t)² / N                 | 7e-5      | `hidden_channels`        |
| `cwt_linear` | one 1x1 conv C_s→C_t (ablation)               | Σ (T(F_s) − F_t)² / N                 | 7e-5      |                          |
| `l2`         | none (shapes must match; ablation)            | Σ (F_s − F_t)² / N                    | 7e-5      |                          |
| `fitnets`    | 1x1 conv + BN                                 | mean squared error                    | 100       |                          |
| `at`         | none                                          | attention transfer (p = 2)            | 1000      | `p`                      |
| `cwd`        | 1x1 conv if C_s ≠ C_t                         | channel-wise spatial-softmax KL · τ²/(C·N) | 3.0  | `tau` (4.0)              |
| `mgd`        | 1x1 align, random mask, 3x3 conv–ReLU–3x3 conv | Σ (G(F_s) − F_t)² / N                | 7e-5      | `mask_ratio` (0.5)       |
| `kd`         | none (logits)                                 | Hinton KL · τ²                        | 1.0       | `tau` (4.0)              |
| `cosine`     | as `cwt` (1x1 conv, ReLU, 1x1 conv)           | mean of 1 − cos per position          | 1.0       | `hidden_channels`        |

``alpha="auto"`` sets α so that each method's term starts at ``auto_ratio`` × the task loss. The ratios are those
of each method's best α (chosen on held-out images) in the CIFAR-10 study (``benchmarks/results/cifar10_study.md``),
measured on the first 4 batches: CWT 6.8, CWT-linear 8.2, FitNets 28, AT 1.4, CWD 34, MGD 2.1, KD 2.7, rounded.
``cosine`` (RADIO's and Theia's loss for foundation teachers, whose feature norms differ by orders of magnitude)
is bounded in [0, 2]: its α 1 and ratio 1 are starting points, not measured optima.
A later ratio sweep on the same setting (``benchmarks/results/cifar10_methods.md``) chose 10, 10, 30, 0.1, 30, 3
and 3 on holdout: each at the grid point nearest its default except AT, whose holdout curve is flat from 0.03
to 0.3.

A pair may also name its method by object instead of by name (Python only; see :func:`resolve_method`): a
:class:`Method` record, or any ``nn.Module`` loss ``f(student_feature, teacher_feature)``, as ModelOpt takes a
loss module per pair.

Default α values follow the papers' classification settings (CWT: 7e-5 on ImageNet's last stage; AT β=1000
and FitNets β=100 as in the CRD benchmark code; CWD loss weight 3 with τ=4; MGD 7e-5 with λ=0.5). They are
starting points: sweep α for your models and data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..losses import (
    attention_transfer,
    channel_wise_divergence,
    cosine_distance,
    kd_divergence,
    mean_squared_error,
    squared_error_per_sample,
)
from ..plugins import registered
from ..transforms import ChannelWiseTransform, FeatureTransform, FitNetsRegressor, Identity, MGDGenerator
from ..transforms.base import channels_of

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Method:
    """A named method: its transform factory, its loss, its default α and its default options.

    ``module``: the loss module of a method given as an ``nn.Module`` in a pair (:func:`resolve_method`); the
    Distiller registers it (``d.criteria``), so its parameters train with the student and are saved.
    """

    name: str
    build_transform: Callable[[Shape, Shape, dict[str, Any]], FeatureTransform]
    loss: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]
    default_alpha: float
    defaults: dict[str, Any] = field(default_factory=dict)
    needs_maps: bool = False  # feature maps (B, C, H, W) only
    auto_ratio: float = 7.0  # alpha "auto": the method's term / task loss at the start of training
    module: nn.Module | None = None


def _require_same_channels(student: Shape, teacher: Shape, name: str) -> None:
    if channels_of(student) != channels_of(teacher):
        raise ValueError(
            f"method {name!r} compares features without a channel transform, but the student has "
            f"{channels_of(student)} channels and the teacher {channels_of(teacher)}; use 'cwt' or 'cwt_linear'"
        )


def _cwt(nonlinear: bool) -> Callable[[Shape, Shape, dict[str, Any]], FeatureTransform]:
    def build(student: Shape, teacher: Shape, options: dict[str, Any]) -> FeatureTransform:
        return ChannelWiseTransform(
            channels_of(student),
            channels_of(teacher),
            hidden_channels=options.get("hidden_channels"),
            nonlinear=nonlinear,
            feature_dim=len(student),
        )

    return build


def _identity(name: str) -> Callable[[Shape, Shape, dict[str, Any]], FeatureTransform]:
    def build(student: Shape, teacher: Shape, options: dict[str, Any]) -> FeatureTransform:
        _require_same_channels(student, teacher, name)
        return Identity()

    return build


def _passthrough(student: Shape, teacher: Shape, options: dict[str, Any]) -> FeatureTransform:
    return Identity()


def _cwd_align(student: Shape, teacher: Shape, options: dict[str, Any]) -> FeatureTransform:
    if student[1] == teacher[1]:
        return Identity()
    return ChannelWiseTransform(student[1], teacher[1], nonlinear=False)


def _sum_squared(s: torch.Tensor, t: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    return squared_error_per_sample(s, t)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("cwt", _cwt(nonlinear=True), _sum_squared, 7e-5, {"hidden_channels": None}, auto_ratio=7.0),
        Method("cwt_linear", _cwt(nonlinear=False), _sum_squared, 7e-5, auto_ratio=8.0),
        Method("l2", _identity("l2"), _sum_squared, 7e-5, auto_ratio=7.0),
        Method(
            "fitnets",
            lambda s, t, o: FitNetsRegressor(s[1], t[1]),
            lambda s, t, o: mean_squared_error(s, t),
            100.0,
            needs_maps=True,
            auto_ratio=30.0,
        ),
        Method(
            "at",
            _passthrough,
            lambda s, t, o: attention_transfer(s, t, o["p"]),
            1000.0,
            {"p": 2.0},
            needs_maps=True,
            auto_ratio=1.5,
        ),
        Method(
            "cwd",
            _cwd_align,
            lambda s, t, o: channel_wise_divergence(s, t, o["tau"]),
            3.0,
            {"tau": 4.0},
            needs_maps=True,
            auto_ratio=30.0,
        ),
        Method(
            "mgd",
            lambda s, t, o: MGDGenerator(s[1], t[1], o["mask_ratio"]),
            _sum_squared,
            7e-5,
            {"mask_ratio": 0.5},
            needs_maps=True,
            auto_ratio=2.0,
        ),
        Method(
            "cosine",
            _cwt(nonlinear=True),
            lambda s, t, o: cosine_distance(s, t),
            1.0,
            {"hidden_channels": None},
            auto_ratio=1.0,
        ),
        Method(
            "kd",
            _identity("kd"),
            lambda s, t, o: kd_divergence(s, t, o["tau"]),
            1.0,
            {"tau": 4.0},
            auto_ratio=3.0,
        ),
    ]
}


def get_method(name: str) -> Method:
    """Look up a method by name (built-in or registered), with the list of valid names in the error."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown distillation method {name!r}; choose one of {sorted(METHODS)}") from None


def register_method(
    name: str,
    *,
    loss: Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor],
    transform: str | Callable[[Shape, Shape, dict[str, Any]], FeatureTransform] = "cwt",
    default_ratio: float = 7.0,
    default_alpha: float = 1.0,
    options: dict[str, Any] | None = None,
    needs_maps: bool = False,
) -> Method:
    """Add a method that pairs, configs (``distill.method``) and the CLI can name.

    Args:
        name: the method's name (must not be taken).
        loss: ``f(aligned_student, teacher, options)`` → the unweighted loss, a scalar (sum over the batch / N
            as the built-in methods do, or a mean); features arrive in float32, the teacher's detached.
        transform: the name of a method whose transform to reuse (``"cwt"``, ``"cwt_linear"``, ``"l2"`` for
            none, ...) or ``f(student_shape, teacher_shape, options)`` → an ``nn.Module`` that takes
            ``(feature, size)`` (see :class:`featdistill.transforms.base.FeatureTransform`).
        default_ratio: ``alpha: auto``'s ratio of this term to the task loss at the start of training.
        default_alpha: α when a run gives none.
        options: the method's options and their defaults (``distill.options.NAME``).
        needs_maps: the method takes (B, C, H, W) feature maps only.

    Returns:
        the registered :class:`Method`.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register_method: the name must be an identifier such as 'cosine', got {name!r}")
    if name in METHODS:
        raise ValueError(f"register_method: method {name!r} exists already; choose another name")
    if not default_ratio > 0:
        raise ValueError(f"register_method({name!r}): default_ratio must be positive, got {default_ratio}")
    build = get_method(transform).build_transform if isinstance(transform, str) else transform
    if not callable(build) or not callable(loss):
        raise TypeError(
            f"register_method({name!r}): transform and loss must be callables (or transform a name)"
        )
    method = Method(
        name, build, loss, float(default_alpha), dict(options or {}), needs_maps, float(default_ratio)
    )
    METHODS[name] = method
    registered("method")
    return method


MethodSpec = str | Method | nn.Module


def _loss_module_name(module: nn.Module) -> str:
    """A loss module's method name: its ``name`` attribute if it is a string, else its class name."""
    name = getattr(module, "name", None)
    return name if isinstance(name, str) else type(module).__name__


def _call_module(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]:
    def loss(student: torch.Tensor, teacher: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        return module(student, teacher)

    return loss


def resolve_method(spec: MethodSpec) -> Method:
    """The method a pair names: a registered name, a :class:`Method` record, or an ``nn.Module`` loss.

    A loss module ``f(student_feature, teacher_feature)`` → scalar gets the student feature as it is (resized
    to the teacher's height and width, no channel transform: a module that must align channels holds its own
    layers), α 1.0 by default and ``alpha: auto``'s default ratio 7; its α key is its ``name`` attribute, or
    its class name (``"CosineLoss"``). An object's name must be an identifier and not a registered method's.
    """
    if isinstance(spec, str):
        return get_method(spec)
    if isinstance(spec, nn.Module):
        method = Method(_loss_module_name(spec), _passthrough, _call_module(spec), 1.0, module=spec)
    elif isinstance(spec, Method):
        method = spec
    else:
        raise TypeError(
            f"a pair's method must be a method name ({sorted(METHODS)}), a featdistill Method or an nn.Module "
            f"loss f(student_feature, teacher_feature); got a {type(spec).__name__} (wrap a function in an "
            "nn.Module, or register it with featdistill.register_method)"
        )
    if not method.name.isidentifier():
        raise ValueError(
            f"method object name {method.name!r} must be an identifier such as 'cosine' (it keys alpha); "
            "set the object's name"
        )
    if METHODS.get(method.name, method) is not method:
        raise ValueError(
            f"method object {method.name!r} has the name of a registered method; give it another name "
            "(a loss module's name attribute)"
        )
    return method
