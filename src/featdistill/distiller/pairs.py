"""Layer pairs: which student layer is compared with which teacher layer, and by which method.

A pair is given as ``(student_layer, teacher_layer[, method])`` or ``{"student", "teacher", "method"}``;
:func:`parse_pairs_and_methods` turns such entries into :class:`Pair` objects (each naming its method) and the
method object of each name. The Distiller and the loss balancer (one α per ``Pair.alpha_key``) both use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .methods import Method, MethodSpec, resolve_method
from .teachers import teacher_prefix

__all__ = ["Pair", "PairSpec", "parse_pairs", "parse_pairs_and_methods"]

# (student_layer, teacher_layer[, method]) or {"student", "teacher", "method"}; a method is a MethodSpec
PairSpec = Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True)
class Pair:
    """One distilled layer pair: student address → teacher address, compared by ``method``."""

    student: str
    teacher: str  # with several teachers, prefixed by the teacher's name: "cnn:layer4"
    method: str
    teacher_name: str = ""  # "" for the one teacher given as ``teacher=``

    @property
    def alpha_key(self) -> str:
        """Which α weighs this pair: its method's, or with several teachers its teacher's (``"cnn:cwt"``)."""
        return teacher_prefix(self.teacher_name) + self.method

    @property
    def key(self) -> str:
        """The name of this pair's term in ``DistillOutput.losses``."""
        side = self.student if self.student == self.teacher else f"{self.student}->{self.teacher}"
        return f"{self.method}:{side}"


def parse_pairs(pairs: Sequence[PairSpec], method: MethodSpec) -> list[Pair]:
    """Normalise ``(s, t)``, ``(s, t, method)`` or ``{"student", "teacher", "method"}`` entries."""
    return parse_pairs_and_methods(pairs, method)[0]


def parse_pairs_and_methods(
    pairs: Sequence[PairSpec], method: MethodSpec
) -> tuple[list[Pair], dict[str, Method]]:
    """The pairs (each naming its method) and the method of each name; a method may be given by name or as
    an object (:func:`featdistill.distiller.methods.resolve_method`), and one name means one object."""
    parsed, methods = [], {}
    for spec in pairs:
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"student", "teacher", "method"}
            if unknown or not {"student", "teacher"} <= set(spec):
                raise ValueError(f"pair {dict(spec)} needs keys 'student', 'teacher' and optionally 'method'")
            student, teacher, given = spec["student"], spec["teacher"], spec.get("method", method)
        elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) in (2, 3):
            student, teacher, given = spec[0], spec[1], spec[2] if len(spec) == 3 else method
        else:
            raise ValueError(f"pair {spec!r} must be (student_layer, teacher_layer[, method])")
        found = resolve_method(given)
        known = methods.setdefault(found.name, found)
        if known is not found and (known.module is None or known.module is not found.module):
            raise ValueError(
                f"two different method objects are named {found.name!r}: give each its own name (a loss "
                "module's name attribute), so that each has its own alpha, or pass the same object"
            )
        parsed.append(Pair(student, teacher, found.name))
    if not parsed:
        raise ValueError(
            "pairs is empty: name at least one (student_layer, teacher_layer) pair or use 'auto'"
        )
    return parsed, methods
