"""The table of ``benchmarks/alpha_auto.sh``: alpha auto vs the best grid alpha vs the plain student, per dataset.

Reads ``<runs>/<dataset>/{grid,auto,plain}/sweep.json`` (written by ``featdistill sweep``) and prints markdown:
    python benchmarks/alpha_auto_report.py runs/bench/alpha_auto > benchmarks/results/alpha_auto.md
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

from machine import cpu_name
from sweep_record import load_json, refit_alphas

GOAL = 1.5  # points (top-1 or mIoU) over the plain student


def main(root: Path) -> None:
    print("# `alpha: auto` against the best grid alpha (CPU tier)\n")
    print(
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    print("- command: `bash benchmarks/alpha_auto.sh DATASET` for each dataset, then this report")
    print(
        "- protocol: a 5-point alpha grid trained in lockstep by `featdistill sweep`, the best chosen on the "
        "holdout split (10 % of the training images, seed 0); `alpha: auto` with the method's default ratio; "
        "the plain student. Each is then refit on the whole training split with seeds 0, 1, 2 "
        "(`--refit-seeds`) and scored on the test split; mean ± std over the seeds\n"
    )
    print(
        "| dataset | metric | plain | grid: holdout-best α | grid α test | auto: α chosen (per seed) | auto test "
        "| auto − grid (grid stds) | auto − plain | goals |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    details = []
    for dataset in sorted(p.name for p in root.iterdir() if p.is_dir()):
        grid, auto, plain = (
            load_json(root / dataset / part / "sweep.json") for part in ("grid", "auto", "plain")
        )
        if not (grid and auto and plain and grid.get("refit") and auto.get("refit") and plain.get("refit")):
            print(f"| {dataset} | (incomplete: not every sweep finished) | | | | | | | | |")
            continue
        g, a, p = grid["refit"], auto["refit"], plain["refit"]
        metric = g["metric"]
        diff, std = a["mean"] - g["mean"], max(g["std"], 1e-9)
        within = (
            "yes"
            if abs(diff) <= std
            else f"no, {'above' if diff > 0 else 'below'} by {abs(diff) / std:.1f} stds"
        )
        gain = a["mean"] - p["mean"]
        goals = f"within 1 std: {within}; ≥ +{GOAL}: {'yes' if gain >= GOAL else 'no'}"
        chosen = ", ".join(f"{v:.3g}" for v in refit_alphas(a))
        print(
            f"| {dataset} | {metric} | {p['mean']:.2f} ± {p['std']:.2f} | {grid['best']['values']['distill.alpha']:g} "
            f"| {g['mean']:.2f} ± {g['std']:.2f} | {chosen} | {a['mean']:.2f} ± {a['std']:.2f} "
            f"| {(a['mean'] - g['mean']) / max(g['std'], 1e-9):+.2f} | {gain:+.2f} | {goals} |"
        )
        holdout = ", ".join(
            f"{r['values']['distill.alpha']:g}: {r['metric']:.2f}" if r["metric"] is not None else "failed"
            for r in grid["variants"]
        )
        details.append(f"- {dataset}: holdout {metric} of the grid: {holdout}")
    print("\nHoldout scores (seed 0), from which the grid's α was chosen:\n")
    print("\n".join(details))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench/alpha_auto"))
