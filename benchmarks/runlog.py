"""The benchmarks' record of finished runs: one JSON line per run, so a re-run skips what is done."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def load_done(path: Path) -> dict[str, dict]:
    """Finished runs by name (empty when the file does not exist yet)."""
    if not path.exists():
        return {}
    return {r["run"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def record(path: Path, row: dict) -> None:
    """Append one finished run and echo it to the log."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def mean_std(values: list[float], scale: float = 1.0) -> str:
    """``mean ± std`` of ``values`` times ``scale`` to two decimals (std 0 for a single value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * std:.2f}"
