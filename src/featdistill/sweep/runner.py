"""``featdistill sweep``: train every grid variant (lockstep where they share data and teacher, see
:mod:`featdistill.sweep.groups`), score each on the holdout split, choose the best, optionally refit it on the
whole training split and test it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, load_config
from ..engine.distributed import barrier, is_main
from ..run import build_trainer
from .grid import Variant, expand, parse_grid
from .groups import Shard, other_settings, pending_row, plan_runs, result_of, say, train_groups
from .report import best_row, write_best_config, write_report
from .stats import mean_interval

DEFAULT_HOLDOUT = 0.1  # the share of training images scored when the config sets no data.holdout


def run_sweep(
    config: str | Path,
    grid_specs: list[str],
    overrides: list[str] | None = None,
    refit: bool = False,
    refit_seeds: list[int] | None = None,
    resume: bool = False,
    shard: Shard | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the sweep; return the ``sweep.json`` record."""
    base = load_config(config, overrides)
    grid = parse_grid(grid_specs)
    if base.compare.arms:
        say(
            "featdistill sweep: compare.arms is read by featdistill compare only; the sweep tunes the config as it is"
        )
    if base.data.holdout is None and "data.holdout" not in grid:
        base = base.with_overrides({"data.holdout": DEFAULT_HOLDOUT})
        say(
            f"featdistill sweep: data.holdout is not set; scoring on {DEFAULT_HOLDOUT:.0%} of the training images"
        )
    out_dir, progress = Path(base.output.dir), progress and base.output.progress
    variants = expand(base, grid, out_dir)
    shard = shard or Shard()
    mine, stale, metric, groups = plan_runs(variants, out_dir, shard, resume, "sweep")
    group_of = {v.index: g for g, members in enumerate(groups) for v in members}
    say(
        f"featdistill sweep: {len(variants)} variant(s) in {len(groups)} lockstep group(s)"
        + (f"; shard {shard.index}/{shard.count} runs {len(mine)}" if shard.count > 1 else "")
        + f"; scored on holdout {metric}"
    )
    only = len(variants) == 1 and bool(refit or refit_seeds)  # nothing to choose: refit it directly
    if not only:
        train_groups(groups, shard, resume, stale, out_dir, metric, progress)
    barrier()  # every process reads the results rank 0 wrote, so all choose the same best
    rows = [
        result_of(v)
        or pending_row(v, group_of[v.index], "only variant: refit without scoring" if only else "")
        for v in variants
    ]
    best = rows[0] if only else best_row(rows)
    refit_record = None
    if best is not None and is_main():
        write_best_config(
            out_dir / "best.yaml", _refit_config(variants[best["index"]], out_dir, progress).to_dict()
        )
    if refit or refit_seeds:
        if best is None:
            raise ConfigError(
                "--refit: no variant finished (see sweep.md for their status); fix the failures or widen the "
                "grid, then run the sweep again with --resume auto"
            )
        refit_record = _refit(variants[best["index"]], out_dir, metric, refit_seeds, resume, progress)
    if not is_main():
        return {}
    record = write_report(out_dir, metric, list(grid), rows, refit_record)
    say(f"featdistill sweep: wrote {out_dir / 'sweep.md'}" + (f"; best {best['name']}" if best else ""))
    return record


def _refit_config(variant: Variant, out_dir: Path, progress: bool, seed: int | None = None) -> RunConfig:
    """The variant's config trained on the whole training split (no holdout), in ``out_dir/refit[-seedS]``."""
    return variant.cfg.with_overrides(
        {
            "data.holdout": None,
            "output.dir": str(out_dir / ("refit" if seed is None else f"refit-seed{seed}")),
            "output.progress": progress,  # as the sweep's config says (variants run without their own bar)
            **({} if seed is None else {"train.seed": seed}),
        }
    )


def _refit(
    variant: Variant, out_dir: Path, metric: str, seeds: list[int] | None, resume: bool, progress: bool
) -> dict[str, Any]:
    """Train the chosen variant on the whole training split (once, or once per seed); test each run."""
    runs = []
    for seed in seeds or [None]:
        cfg = _refit_config(variant, out_dir, progress, seed)
        last = Path(cfg.output.dir) / "last.pt"
        say(
            f"featdistill sweep: refitting {variant.name} on the whole training split"
            + (f", seed {seed}" if seed is not None else "")
        )
        again = resume and other_settings(last.parent, cfg)  # the best variant changed since (grid changed)
        if again:
            say(f"featdistill sweep: {last.parent} holds a refit of other settings; refitting anew")
        metrics = build_trainer(cfg).fit(resume=last if resume and not again and last.is_file() else None)
        runs.append({"seed": cfg.train.seed, "dir": cfg.output.dir, "metrics": metrics})
    values = [run["metrics"][metric] for run in runs if metric in run["metrics"]]
    return {"variant": variant.name, "runs": runs, "metric": metric, **mean_interval(values)}
