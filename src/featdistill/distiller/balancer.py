"""The weights of the distillation terms: one α per ``Pair.alpha_key``, fixed or calibrated by ``alpha: auto``.

A ``LossBalancer`` holds every fact about α that training, checkpoints and reports need: each key's value,
which keys were configured ``"auto"``, the ratio each auto key is calibrated to (method loss · α / task loss at
the start of training), and the losses that calibration measured. Its ``state_dict`` is plain JSON data, so a
checkpoint stores it and a resume restores it without calibrating again.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .methods import METHODS, Method
from .pairs import Pair

AlphaSpec = float | str | Mapping[str, Any] | None

_MISSING = object()


def _alpha_value(value: float | str, key: str) -> float | None:
    """A number >= 0 (0 switches the method's term off), or None for ``"auto"``."""
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"alpha of method {key!r} must be a number or 'auto', got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"alpha of method {key!r} is {value}: it must be a finite number >= 0 (0 switches the term "
            "off; a negative alpha rewards the student for moving away from the teacher)"
        )
    return float(value)


def _alpha_entry(alpha: Mapping[str, Any], pair: Pair) -> Any:
    """The most specific entry of an ``alpha`` mapping for ``pair``: ``"cnn:cwt"``, ``{"cnn": {"cwt"}}``,
    ``{"cnn": ...}``, then ``{"cwt": ...}``; ``_MISSING`` when there is none."""
    if pair.alpha_key in alpha:
        return alpha[pair.alpha_key]
    if pair.teacher_name in alpha:
        by_teacher = alpha[pair.teacher_name]
        if not isinstance(by_teacher, Mapping):
            return by_teacher
        if pair.method in by_teacher:
            return by_teacher[pair.method]
    return alpha.get(pair.method, _MISSING)


def _check_ratio(ratio: float | None) -> float | None:
    if ratio is not None and not (
        isinstance(ratio, numbers.Real) and not isinstance(ratio, bool) and 0 < ratio < math.inf
    ):
        raise ValueError(
            f"auto_ratio (alpha 'auto', distill.auto_ratio) must be positive and finite, got {ratio}"
        )
    return None if ratio is None else float(ratio)


def saved_balancer(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The balancer state a checkpoint's mapping holds under ``"balancer"``; a checkpoint written before the
    balancer has its α alone under ``"alpha"``, returned as ``{"alpha": ...}`` (what ``load_state_dict`` reads)."""
    return dict(saved.get("balancer") or {"alpha": saved.get("alpha", {})})


class LossBalancer:
    """Each distillation term's α: resolved from the ``alpha`` argument, calibrated once, saved and restored.

    Args:
        alpha: one value for all keys, ``{key: value}`` (key: a method, a teacher, or ``"teacher:method"``;
            the most specific entry wins), or None for each method's ``default_alpha``; a value is a number
            >= 0 or ``"auto"``.
        pairs: the distiller's pairs (each names its ``alpha_key``).
        methods: the method of each name the pairs use.
        auto_ratio: the ratio every ``"auto"`` key is calibrated to (None: each method's ``auto_ratio``).
    """

    def __init__(
        self,
        alpha: AlphaSpec,
        pairs: Sequence[Pair],
        methods: Mapping[str, Method],
        auto_ratio: float | None = None,
    ) -> None:
        ratio = _check_ratio(auto_ratio)
        self._alpha = self._resolve(alpha, pairs, methods)
        self.auto = [key for key, value in self._alpha.items() if value is None]
        method_of = {p.alpha_key: p.method for p in pairs}
        self.ratios = {key: ratio or methods[method_of[key]].auto_ratio for key in self.auto}
        self.measured: dict[str, float] = {}

    @staticmethod
    def _resolve(
        alpha: AlphaSpec, pairs: Sequence[Pair], methods: Mapping[str, Method]
    ) -> dict[str, float | None]:
        """One α per ``Pair.alpha_key`` used; None marks an α that is ``"auto"`` and not calibrated yet."""
        keys = {p.alpha_key: p for p in pairs}
        if alpha is None:
            return {key: methods[p.method].default_alpha for key, p in keys.items()}
        if not isinstance(alpha, Mapping):
            return {key: _alpha_value(alpha, key) for key in keys}
        several = any(p.teacher_name for p in pairs)
        if several:
            teachers = {p.teacher_name for p in pairs}
            unknown = sorted(set(alpha) - set(keys) - set(METHODS) - set(methods) - teachers)
            if unknown:
                raise ValueError(
                    f"alpha has entries {unknown} that are neither a method, a teacher {sorted(teachers)} "
                    "nor 'teacher:method' of a pair"
                )
        chosen = {key: _alpha_entry(alpha, pair) for key, pair in keys.items()}
        missing = sorted(key for key, value in chosen.items() if value is _MISSING)
        if missing:
            if several:
                raise ValueError(
                    f"alpha has no entry for {missing}; give one per method ('cwt'), per teacher or per "
                    "teacher and method ('NAME:cwt')"
                )
            raise ValueError(f"alpha has no entry for method(s) {missing}; give one per method used")
        return {key: _alpha_value(value, key) for key, value in chosen.items()}

    @property
    def alpha(self) -> Mapping[str, float | None]:
        """Each key's α, read-only (None: ``"auto"``, not calibrated yet); change it with :meth:`set`."""
        return MappingProxyType(self._alpha)

    @property
    def uncalibrated(self) -> list[str]:
        """The keys that are ``"auto"`` and wait for :meth:`calibrate`."""
        return [key for key, value in self._alpha.items() if value is None]

    def weights(self) -> dict[str, float]:
        """Each key's α for a forward; refused while an ``"auto"`` key is not calibrated."""
        pending = self.uncalibrated
        if pending:
            raise RuntimeError(
                f"alpha 'auto' of method(s) {pending} is not calibrated yet: call calibrate_alpha(batches, "
                "task_loss) once before training, or give alpha a number"
            )
        return dict(self._alpha)  # type: ignore[arg-type]  # no None left

    def chosen(self) -> dict[str, float]:
        """The α of each key configured ``"auto"``, once calibrated or restored (what runs report)."""
        return {key: self._alpha[key] for key in self.auto if self._alpha[key] is not None}  # type: ignore[misc]

    def set(self, alpha: Mapping[str, float]) -> None:
        """Set the α of the named keys; each a finite number >= 0."""
        unknown = sorted(set(alpha) - set(self._alpha))
        if unknown:
            raise ValueError(
                f"alpha given for method(s) {unknown} that no pair uses; used: {sorted(self._alpha)}"
            )
        checked = {}
        for key, value in alpha.items():
            checked[key] = _alpha_value(value, key)
            if checked[key] is None:
                raise ValueError(f"alpha of method {key!r} must be a number here, got 'auto'")
        self._alpha.update(checked)

    def calibrate(self, measured: Mapping[str, float]) -> dict[str, float]:
        """α = ratio · task loss / key loss for each uncalibrated key; returns (and sets) the chosen α.

        ``measured``: the mean task loss (``"task"``) and each key's unweighted loss on the first training
        batches, as :meth:`featdistill.Distiller.measure_losses` returns them.
        """
        chosen = {}
        for key in self.uncalibrated:
            task, raw = measured["task"], measured[key]
            if not (math.isfinite(task) and math.isfinite(raw) and raw > 0 and task > 0):
                raise ValueError(
                    f"alpha 'auto' cannot be calibrated for method {key!r}: task loss {task:.4g}, {key} loss "
                    f"{raw:.4g} on the first batches; give distill.alpha a number instead"
                )
            chosen[key] = self.ratios[key] * task / raw
        self.set(chosen)
        self.measured = {name: float(value) for name, value in measured.items()}
        return chosen

    def describe(self) -> str:
        """The chosen α with what it was calibrated from, e.g. ``cwt=0.0012 (cwt loss 5.1e+03, task loss
        0.89, ratio 7)``."""
        task = self.measured.get("task", math.nan)
        return ", ".join(
            f"{key}={value:.4g} ({key} loss {self.measured.get(key, math.nan):.4g}, task loss {task:.4g}, "
            f"ratio {self.ratios[key]:g})"
            for key, value in self.chosen().items()
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON data: each key's α, the auto keys, their ratios and the calibration's measured losses."""
        return {
            "alpha": dict(self._alpha),
            "auto": list(self.auto),
            "ratios": dict(self.ratios),
            "measured": dict(self.measured),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values, so a resumed run keeps its calibrated α.

        A state with ``alpha`` only (what checkpoints held before the balancer, ``{"alpha": {...}}``) sets
        those numbers and keeps the rest as configured.
        """
        alpha = state.get("alpha")
        if not isinstance(alpha, Mapping):
            raise ValueError(f"a balancer state needs an 'alpha' mapping, got keys {sorted(state)}")
        if set(state) == {"alpha"}:
            self.set({key: value for key, value in alpha.items() if value is not None})
            return
        if set(alpha) != set(self._alpha):
            raise ValueError(
                f"the saved alpha is for {sorted(alpha)}, this distiller's for {sorted(self._alpha)}"
            )
        auto = [str(key) for key in state.get("auto", [])]
        values = {
            key: None if value is None and key in auto else _alpha_value(value, key)
            for key, value in alpha.items()
        }
        self._alpha.update(values)
        self.auto = auto
        self.ratios = {**self.ratios, **{key: float(value) for key, value in state.get("ratios", {}).items()}}
        self.measured = {key: float(value) for key, value in state.get("measured", {}).items()}
