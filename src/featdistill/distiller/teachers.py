"""Running frozen teachers: one ``TeacherRun`` per teacher (its module, forward, dtype and taps).

A Distiller has one teacher (``teacher=``, named ``""``: its layers are named as they are) or several
(``teachers={"cnn": t1, "vit": t2}``: each pair names its teacher's layer as ``"cnn:layer4"``). Each teacher
runs on its own, frozen, without grad, stopped right after its own last tapped layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from ..taps import FeatureTaps

TEACHER_SEPARATOR = ":"  # "cnn:layer4" = layer4 of the teacher named cnn

T = TypeVar("T")


def default_teacher_forward(teacher: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Call the teacher with exactly the student's arguments."""
    return teacher(*args, **kwargs)


def _params_device(model: nn.Module) -> tuple[torch.device, torch.dtype] | None:
    """The device and floating dtype of the model's first floating parameter or buffer (None: it has none)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return None


def _cast(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``value`` with every tensor on ``device`` and every floating tensor in ``dtype`` (nested in lists,
    tuples and dicts)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else None)
    if type(value) in (list, tuple):  # not NamedTuples or other subclasses, which are passed as they are
        return type(value)(_cast(item, device, dtype) for item in value)
    if type(value) is dict:
        return {key: _cast(item, device, dtype) for key, item in value.items()}
    return value


def run_teacher(
    teacher: nn.Module,
    taps: FeatureTaps,
    teacher_forward: Callable[..., Any],
    teacher_dtype: torch.dtype | None,
    args: tuple,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The tapped teacher features for these inputs: no grad, optional autocast, stopped after the last tap.

    The teacher runs in its own dtype and on its own device: the inputs are cast to them (a float64, bf16
    or fp16 teacher, or one on another device, takes a float32 batch).
    """
    placed = _params_device(teacher)
    if placed is not None:
        args, kwargs = _cast(args, *placed), _cast(kwargs, *placed)
    device = placed[0] if placed is not None else torch.device("cpu")
    autocast = torch.autocast(device.type, dtype=teacher_dtype, enabled=teacher_dtype is not None)
    with torch.no_grad(), autocast, taps.capture(stop_early=True) as features:
        teacher_forward(teacher, *args, **kwargs)
    return features


def teacher_prefix(name: str) -> str:
    """How the pairs name the layers of teacher ``name``: ``"cnn:"``, or ``""`` for the single teacher."""
    return name + TEACHER_SEPARATOR if name else ""


@dataclass(eq=False)
class TeacherRun:
    """One frozen teacher of a Distiller and how it runs: its forward, its dtype and the layers tapped in it.

    ``addresses`` are layer names inside this teacher (no ``name:`` prefix); the features it returns are
    keyed with the prefix, as the pairs name them.
    """

    name: str  # "" for the one teacher given as ``teacher=``
    module: nn.Module
    forward: Callable[..., Any]
    dtype: torch.dtype | None
    addresses: Sequence[str]
    taps: FeatureTaps = field(init=False)

    def __post_init__(self) -> None:
        self.taps = FeatureTaps(self.module, self.addresses, role=self.role)

    @property
    def role(self) -> str:
        """The teacher as error messages name it."""
        return f"teacher {self.name!r}" if self.name else "teacher"

    def runs_like(self, other: TeacherRun) -> bool:
        """Same module run the same way (so one forward serves both).

        A task's ``teacher_forward`` is a method of each variant's own task: the same function runs it alike.
        """
        same_forward = getattr(self.forward, "__func__", self.forward) is getattr(
            other.forward, "__func__", other.forward
        )
        return self.module is other.module and same_forward and self.dtype == other.dtype

    def features(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """This teacher's tapped features, keyed as the pairs name them, detached, stopped after its last tap."""
        found = run_teacher(self.module, self.taps, self.forward, self.dtype, args, kwargs)
        return {teacher_prefix(self.name) + address: feature for address, feature in found.items()}


def run_teachers(runs: Sequence[TeacherRun], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The tapped features of every teacher in ``runs`` for these inputs, keyed as the pairs name them."""
    features: dict[str, Any] = {}
    for run in runs:
        features.update(run.features(args, kwargs))
    return features


def name_teachers(
    teacher: nn.Module | None, teachers: Mapping[str, nn.Module] | None, reserved: Sequence[str]
) -> dict[str, nn.Module]:
    """``{"": teacher}`` or the checked ``teachers`` mapping; exactly one of the two must be given.

    Names may not contain ``:`` (it separates teacher and layer) nor be one of ``reserved`` (the method
    names, which ``alpha`` keys would confuse with a teacher's).
    """
    if (teacher is None) == (teachers is None):
        raise ValueError(
            "give the teacher as teacher=model, or several as teachers={'name': model, ...}; not both, not none"
        )
    if teacher is not None:
        return {"": teacher}
    if not isinstance(teachers, Mapping) or not teachers:
        raise ValueError("teachers must be a non-empty mapping {name: model}, e.g. {'cnn': t1, 'vit': t2}")
    for name, module in teachers.items():
        if not isinstance(name, str) or not name or TEACHER_SEPARATOR in name or name in reserved:
            raise ValueError(
                f"teacher name {name!r} must be a non-empty string without {TEACHER_SEPARATOR!r} that is "
                f"not a method name ({sorted(reserved)})"
            )
        if not isinstance(module, nn.Module):
            raise TypeError(f"teachers[{name!r}] is a {type(module).__name__}, not a torch.nn.Module")
    return dict(teachers)


def per_teacher(value: T | Mapping[str, T], names: Sequence[str], default: T, argument: str) -> dict[str, T]:
    """One value per teacher name from one value for all, or a ``{name: value}`` mapping (others: default)."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ValueError(f"{argument} names teacher(s) {unknown} that are not in teachers: {sorted(names)}")
    return {name: value.get(name, default) for name in names}


def split_teacher(address: str, names: Sequence[str]) -> tuple[str, str]:
    """``"cnn:layer4"`` → ``("cnn", "layer4")``; with the one unnamed teacher, ``("", address)``."""
    if names == [""]:
        return "", address
    name, separator, layer = address.partition(TEACHER_SEPARATOR)
    if not separator or name not in names:
        raise ValueError(
            f"teacher layer {address!r} does not say which teacher it is in: write it as 'NAME:layer' with "
            f"NAME one of {sorted(names)} (e.g. {sorted(names)[0] + TEACHER_SEPARATOR + layer!r})"
        )
    return name, layer
