"""``data.in_memory``: whether a task decodes its splits into memory or streams them from the files.

``auto`` (the default) estimates the decoded size of the splits (images × the decoded bytes of an
inspected image) and decodes in memory when that fits in :data:`MEMORY_FRACTION` of the memory available
now, in a memory-mapped decode cache when ``cache_dir`` is set and its disk has room (the batch path then
reads from the page cache), and streams otherwise. ``true`` that cannot fit is a one-line error raised before
anything is decoded; ``false`` always streams.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["MEMORY_FRACTION", "MemoryPlan", "gigabytes", "memory_line", "plan_memory"]

#: Share of the available memory that decoded splits may take (the rest: model, batches, page cache).
MEMORY_FRACTION = 0.4


def gigabytes(n: float) -> str:
    """``n`` bytes as ``'1.23 GB'`` (powers of 10, as ``free -h --si`` and disk vendors count)."""
    return f"{n / 1e9:.2f} GB"


@dataclass
class MemoryPlan:
    """The choice ``data.in_memory`` led to, and the numbers it was made from (for the ingest report)."""

    setting: bool | str  # data.in_memory as configured: true, false or "auto"
    in_memory: bool  # decode into memory (True) or stream from the files (False)
    estimate: int | None  # decoded bytes of the splits to load (None: not estimated)
    available: int  # bytes of memory available when the choice was made
    cache: str | None = None  # a memory-mapped decode cache holds the pixels (larger than memory)
    reason: str = ""  # why, when neither the estimate nor the setting says it

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "in_memory": self.in_memory,
            "estimate_bytes": self.estimate,
            "available_bytes": self.available,
            "cache": self.cache,
            "reason": self.reason,
        }


def memory_line(plan: dict[str, Any]) -> str:
    """One report line of a ``MemoryPlan.to_dict()``: the choice, the setting, the estimate and memory."""
    setting = str(plan["setting"]).lower()
    choice = "in memory" if plan["in_memory"] else "streaming from the files"
    if plan["cache"] is not None:
        choice = f"in memory, memory-mapped from the decode cache in {plan['cache']}"
    available = plan["available_bytes"]
    if plan["estimate_bytes"] is None:
        numbers = plan["reason"]
    else:
        numbers = (
            f"{gigabytes(plan['estimate_bytes'])} decoded; {int(MEMORY_FRACTION * 100)} % of the "
            f"{gigabytes(available)} memory available is {gigabytes(MEMORY_FRACTION * available)}"
        )
    return f"  {choice} (data.in_memory: {setting}): {numbers}"


def available_memory() -> int:
    """Bytes of memory available to new allocations without swapping (``MemAvailable``)."""
    return int(psutil.virtual_memory().available)


def _disk_free(folder: str | Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    path = Path(folder).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def plan_memory(
    setting: bool | str,
    estimate: int | None,
    *,
    cache_dir: str | Path | None = None,
    cached: bool = False,
    streamable: bool = True,
    reason: str = "",
) -> MemoryPlan:
    """Apply ``data.in_memory`` (``setting``) to ``estimate`` decoded bytes.

    ``cache_dir`` (with ``cached``: the decoded splits are in it already) lets splits larger than memory
    use the batch path from a memory-mapped cache. A split that cannot stream (``streamable`` False: a
    torchvision dataset, or a task without a streaming path) stays in memory under ``auto``. ``reason``
    says why there is no estimate. Raises a one-line ValueError for ``true`` that cannot fit.
    """
    available = available_memory()
    plan = MemoryPlan(setting, setting is not False, estimate, available, reason=reason)
    if setting is False or estimate is None or estimate <= MEMORY_FRACTION * available:
        return plan
    if cache_dir is not None and (cached or estimate <= _disk_free(cache_dir)):
        plan.cache = str(cache_dir)
        return plan
    if setting == "auto":
        plan.in_memory = not streamable
        return plan
    disk = f" or data.options.cache_dir on a disk with {gigabytes(estimate)} free" if streamable else ""
    raise ValueError(
        f"data.in_memory: true, but the decoded splits take {gigabytes(estimate)} and "
        f"{int(MEMORY_FRACTION * 100)} % of the {gigabytes(available)} memory available is "
        f"{gigabytes(MEMORY_FRACTION * available)}: set data.in_memory: auto (streams what does not fit)"
        f"{disk}, or data.limit"
    )
