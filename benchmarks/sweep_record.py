"""Reading what ``featdistill sweep`` wrote, for the benchmarks' reports: its JSON files, the α each refit chose."""

from __future__ import annotations

import json
from pathlib import Path


def load_json(path: Path) -> dict | None:
    """The JSON file at ``path`` (``sweep.json``, ``metrics.json``), or None when it does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def refit_alphas(refit: dict) -> list[float]:
    """The α that ``alpha: auto`` chose in each refit run of a ``sweep.json`` ``refit`` record, in order."""
    chosen = []
    for run in refit["runs"]:
        metrics = load_json(Path(run["dir"]) / "metrics.json") or {}
        chosen += list(metrics.get("alpha", {}).values())
    return chosen
