"""``featdistill compare``: every grid variant ("arm") trained with every seed on the whole training split and
tested on the validation split, with no selection; one row per arm with mean ± std, the 95 % interval, and the
difference and Welch's t against the first arm.

Arms that share data order and teacher train in lockstep (one batch and one teacher forward per step for all),
as in ``featdistill sweep``; seeds change the data order, so each seed is its own group.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, load_config
from ..engine.checkpoint import write_text_atomic
from ..engine.distributed import barrier, is_main
from .grid import Variant, expand, parse_grid
from .groups import Shard, plan_runs, result_of, say, train_groups
from .report import cell, finite
from .stats import mean_interval, welch_t

SEED_KEY = "train.seed"


def run_compare(
    config: str | Path | RunConfig,
    grid_specs: list[str] | None = None,
    overrides: list[str] | None = None,
    seeds: list[int] | None = None,
    resume: bool = False,
    shard: Shard | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and test every arm × seed; write ``compare.md``, ``compare.json``, ``compare.png``; return the record.

    The arms are the config's ``compare.arms`` (named sets of keys; none: the config alone) crossed with
    ``grid_specs``; the seeds are ``seeds``, else ``compare.seeds``, else ``train.seed``. ``config`` is a YAML
    file (with ``overrides``) or a validated config.
    """
    base = config if isinstance(config, RunConfig) else load_config(config, overrides)
    arms = base.compare.arms
    grid = parse_grid(grid_specs) if grid_specs else {}
    if SEED_KEY in grid:
        raise ConfigError(f"compare: give the seeds with --seeds, not --grid {SEED_KEY}")
    if "data.holdout" in grid:
        raise ConfigError("compare trains on the whole training split; data.holdout cannot be a grid key")
    if base.data.holdout is not None:
        say("featdistill compare: data.holdout is ignored; every arm trains on the whole training split")
        base = base.with_overrides({"data.holdout": None})
    seeds = seeds or base.compare.seeds or [base.train.seed]
    out_dir, progress = Path(base.output.dir), progress and base.output.progress
    keys = (["arm"] if arms else []) + list(grid)
    runs = expand(base, {**grid, SEED_KEY: seeds}, out_dir, arms)
    shard = shard or Shard()
    mine, stale, metric, groups = plan_runs(runs, out_dir, shard, resume, "compare")
    say(
        f"featdistill compare: {len(runs) // len(seeds)} arm(s) x {len(seeds)} seed(s) in {len(groups)} lockstep "
        f"group(s)"
        + (f"; shard {shard.index}/{shard.count} runs {len(mine)}" if shard.count > 1 else "")
        + f"; tested on val {metric}"
    )
    train_groups(
        groups, shard, resume, stale, out_dir, metric, progress, evaluate_on="val", command="compare"
    )
    barrier()  # every process reads what rank 0 wrote
    if not is_main():
        return {}
    record = _record(runs, keys, metric, arms)
    write_text_atomic(json.dumps(record, indent=2), out_dir / "compare.json")
    write_text_atomic(_table(record), out_dir / "compare.md")
    _plot(out_dir / "compare.png", record)
    say(f"featdistill compare: wrote {out_dir / 'compare.md'}")
    return record


def _record(
    runs: list[Variant], keys: list[str], metric: str, settings: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Runs grouped into arms (their values without the seed), each summarised; the first arm is the reference.

    A named arm also records the keys it sets (``settings``), so a report can say what each arm is.
    """
    arms: dict[str, dict[str, Any]] = {}
    for run in runs:
        values = {k: run.values[k] for k in keys}
        arm = arms.setdefault(
            json.dumps(values, default=str),
            {"values": values, "set": settings.get(values.get("arm", ""), {}), "runs": []},
        )
        result = result_of(run) or {"status": "not run", "metrics": {}, "seconds": None, "error": ""}
        arm["runs"].append(
            {
                "seed": run.values[SEED_KEY],
                "dir": run.cfg.output.dir,
                "status": result["status"],
                "error": result.get("error", ""),
                "metric": result.get("metrics", {}).get(metric),
                "metrics": result.get("metrics", {}),
                "seconds": result.get("seconds"),
            }
        )
    summaries = []
    for arm in arms.values():
        scored = [r["metric"] for r in arm["runs"] if r["status"] == "done" and finite(r["metric"])]
        seconds = [r["seconds"] for r in arm["runs"] if finite(r["seconds"])]
        arm["summary"] = mean_interval(scored)
        arm["seconds"] = sum(seconds) / len(seconds) if seconds else None
        summaries.append(arm)
    first = summaries[0]["summary"]
    for arm in summaries:
        summary = arm["summary"]
        arm["delta"] = summary["mean"] - first["mean"] if summary["n"] and first["n"] else None
        arm["welch_t"] = welch_t(summary, first)
    return {"metric": f"val {metric}", "grid": keys, "arms": summaries}


def _table(record: dict[str, Any]) -> str:
    keys, metric = record["grid"], record["metric"]
    header = [*keys, metric, "95 % interval", "seeds", "Δ vs first", "Welch t", "seconds", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for number, arm in enumerate(record["arms"]):
        s = arm["summary"]
        failed = [
            f"seed {r['seed']} {r['status']}: {r['error']}" for r in arm["runs"] if r["status"] != "done"
        ]
        cells = [
            *(cell(arm["values"][k]) for k in keys),
            f"{s['mean']:.2f} ± {s['std']:.2f}" if s["n"] else "",
            f"± {s['ci95']:.2f}" if s["n"] > 1 else "",
            ",".join(str(r["seed"]) for r in arm["runs"] if r["status"] == "done"),
            "" if number == 0 or arm["delta"] is None else f"{arm['delta']:+.2f}",
            "" if number == 0 or not math.isfinite(arm["welch_t"]) else f"{arm['welch_t']:+.1f}",
            f"{arm['seconds']:.0f}" if arm["seconds"] is not None else "",
            "; ".join(failed) or "done",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(
            [
                f"# Compare: {metric} of {len(record['arms'])} arm(s)",
                "",
                "Each arm trained on the whole training split once per seed and tested on the validation split; no",
                "selection. Mean ± sample std over seeds, the 95 % Student-t interval of the mean, and the difference",
                "and Welch's t against the first arm. Arms of one lockstep group share their seconds (one batch and one",
                "teacher forward per step for all).",
                "",
                *lines,
            ]
        )
        + "\n"
    )


def _plot(path: Path, record: dict[str, Any]) -> None:
    """Each arm's seeds as points and its mean ± std as a bar."""
    arms = [arm for arm in record["arms"] if arm["summary"]["n"]]
    if not arms:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "featdistill: matplotlib is not installed, so compare.png is not drawn (pip install matplotlib)"
        )
        return
    labels = [
        ", ".join(
            cell(v) if k == "arm" else f"{k.rsplit('.', 1)[-1]}={cell(v)}" for k, v in arm["values"].items()
        )
        or "config"
        for arm in arms
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(arms) + 2), 4))
    for x, arm in enumerate(arms):
        s = arm["summary"]
        ax.bar(x, s["mean"], yerr=s["std"], color=f"C{x % 10}", alpha=0.5, capsize=4)
        scored = [r["metric"] for r in arm["runs"] if r["status"] == "done" and finite(r["metric"])]
        ax.plot([x] * len(scored), scored, "k.", markersize=6)
    low = min(min(r["metric"] for r in a["runs"] if finite(r["metric"])) for a in arms)
    high = max(max(r["metric"] for r in a["runs"] if finite(r["metric"])) for a in arms)
    margin = max(1.0, 0.2 * (high - low))
    ax.set_ylim(low - margin, high + margin)
    ax.set_xticks(range(len(arms)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(record["metric"])
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
