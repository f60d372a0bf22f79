"""A sweep's record: ``sweep.md``, ``sweep.json``, ``sweep.png`` and ``best.yaml`` from the variants' results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from ..atomic import staged, write_text_atomic


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished variant with the highest holdout metric (the first one on a tie)."""
    done = [r for r in rows if r["status"] == "done" and finite(r.get("metric"))]
    return max(done, key=lambda r: r["metric"]) if done else None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def write_report(
    out_dir: Path,
    metric: str,
    keys: list[str],
    rows: list[dict[str, Any]],
    refit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the table, the JSON record and the plot; return the JSON record."""
    best = best_row(rows)
    record = {"metric": f"holdout {metric}", "grid": keys, "variants": rows, "best": best, "refit": refit}
    write_text_atomic(json.dumps(record, indent=2), out_dir / "sweep.json")
    header = [*keys, f"holdout {metric}", "steps", "seconds", "group", "status", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        chosen = "**best**" if best is not None and row["index"] == best["index"] else ""
        status = row["status"] + (f": {row['error']}" if row.get("error") else "")
        cells = [
            *(cell(row["values"][k]) for k in keys),
            f"{row['metric']:.2f}" if finite(row.get("metric")) else "",
            str(row.get("steps", "")),
            f"{row['seconds']:.0f}" if finite(row.get("seconds")) else "",
            str(row.get("group", "")),
            status,
            chosen,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"# Sweep: holdout {metric} of {len(rows)} variants",
        "",
        "Chosen on the holdout split carved from the training data (`data.holdout`); the test split was not used.",
        "Variants of one group trained in lockstep (one batch and one teacher forward per step for all), so their",
        "seconds are the group's.",
        "",
        *lines,
    ]
    if best is not None:
        notes += ["", f"Best: `{best['name']}` (`best.yaml`)."]
    if refit is not None:
        notes += [
            "",
            f"Refit of `{refit['variant']}` on the whole training split, scored on the test split:",
            "",
        ]
        notes += ["| seed | " + metric + " | folder |", "|---|---|---|"]
        notes += [
            f"| {r['seed']} | {r['metrics'].get(metric, float('nan')):.2f} | `{r['dir']}` |"
            for r in refit["runs"]
        ]
        if refit.get("n", 0) > 1:
            notes += [
                "",
                f"Test {metric}: {refit['mean']:.2f} ± {refit['std']:.2f} (mean ± std of {refit['n']} seeds; "
                f"95 % interval of the mean ± {refit['ci95']:.2f}).",
            ]
    write_text_atomic("\n".join(notes) + "\n", out_dir / "sweep.md")
    _plot(out_dir / "sweep.png", metric, keys, rows)
    return record


def write_best_config(path: Path, config: dict[str, Any]) -> None:
    """``best.yaml``: the best variant's complete config, ready for ``featdistill train``."""
    write_text_atomic(yaml.safe_dump(config, sort_keys=False), path)


def _plot(path: Path, metric: str, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """Holdout metric against the first grid key (log axis for α and lr), one line per other combination."""
    if not any(finite(row.get("metric")) for row in rows):
        return  # nothing scored (a one-variant sweep refits without scoring)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("featdistill: matplotlib is not installed, so sweep.png is not drawn (pip install matplotlib)")
        return
    first, rest = keys[0], keys[1:]
    xs = [row["values"][first] for row in rows]
    numbers = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    categories = list(dict.fromkeys(cell(x) for x in xs if x not in numbers))
    fig, ax = plt.subplots(figsize=(6, 4))
    lines: dict[str, list[tuple[Any, float]]] = {}
    for row in rows:
        if finite(row.get("metric")):
            label = ", ".join(f"{k.rsplit('.', 1)[-1]}={cell(row['values'][k])}" for k in rest) or metric
            lines.setdefault(label, []).append((row["values"][first], row["metric"]))
    for number, (label, points) in enumerate(lines.items()):
        color = f"C{number % 10}"
        if numbers:  # numeric values on the axis; others (e.g. alpha "auto") as horizontal lines
            on_axis = sorted(p for p in points if p[0] in numbers)
            ax.plot([p[0] for p in on_axis], [p[1] for p in on_axis], marker="o", color=color, label=label)
            for x, y in points:
                if x not in numbers:
                    ax.axhline(
                        y, color=color, linestyle="--", label=f"{label}: {first.rsplit('.', 1)[-1]}={x}"
                    )
        else:
            ax.plot(
                [categories.index(cell(p[0])) for p in points],
                [p[1] for p in points],
                "o-",
                color=color,
                label=label,
            )
    if (
        numbers
        and min(numbers) > 0
        and (first.rsplit(".", 1)[-1] in ("alpha", "lr", "auto_ratio") or max(numbers) / min(numbers) >= 10)
    ):
        ax.set_xscale("log")
    if not numbers:
        ax.set_xticks(range(len(categories)), categories, rotation=20)
    ax.set_xlabel(first)
    ax.set_ylabel(f"holdout {metric}")
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with staged(path) as target:  # a failed write leaves the previous plot
        fig.savefig(target, dpi=120)
    plt.close(fig)
