"""Sweeps and comparisons: grid variants of one config trained in lockstep on one teacher forward, chosen on a
holdout split (``sweep``) or each trained with several seeds and tested (``compare``)."""

from .compare import run_compare
from .grid import LOCKSTEP_FREE, Variant, expand, lockstep_groups, parse_grid
from .groups import Shard
from .runner import run_sweep

__all__ = [
    "LOCKSTEP_FREE",
    "Shard",
    "Variant",
    "expand",
    "lockstep_groups",
    "parse_grid",
    "run_compare",
    "run_sweep",
]
