"""Summaries of repeated runs: mean, std and 95 % interval of a metric over seeds, and Welch's t of two."""

from __future__ import annotations

import math


def mean_interval(values: list[float]) -> dict[str, float | int]:
    """Mean, sample std and the half-width of the 95 % Student-t interval of the mean."""
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": 0.0, "ci95": float("nan")}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": mean, "std": std, "ci95": _T975.get(n - 1, 1.96) * std / math.sqrt(n)}


# Two-sided 95 % quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975, df)).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def welch_t(a: dict[str, float | int], b: dict[str, float | int]) -> float:
    """Welch's t of the mean of ``a`` against that of ``b`` (two ``mean_interval`` records of >= 2 runs each).

    NaN when either has fewer than two runs or both spread is zero (no difference can be judged).
    """
    if a.get("n", 0) < 2 or b.get("n", 0) < 2:
        return float("nan")
    spread = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return (a["mean"] - b["mean"]) / spread if spread > 0 else float("nan")
