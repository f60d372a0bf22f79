"""The table of ``benchmarks/cifar10_methods.sh``: every method tuned alike on holdout, then 5 refit seeds on test.

Reads ``<runs>/e<EPOCHS>/<method>/sweep.json`` (written by ``featdistill sweep``) and prints markdown; with the
run's log, also each method's wall time; with ``--plot``, draws every method's holdout curve and test interval:
    python benchmarks/cifar10_methods_report.py runs/bench/cifar10_methods/e10 \
        --log runs/bench/cifar10_methods_e10.log --plot benchmarks/results/cifar10_methods.png
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import torch

from featdistill.sweep.stats import welch_t
from machine import cpu_name
from sweep_record import load_json, refit_alphas

BASELINES = ["none", "kd", "fitnets", "at", "cwd", "mgd", "cwt_linear", "cwt"]
GOAL = 1.5  # top-1 points of CWT over the plain student


def _wall_minutes(logs: list[Path]) -> dict[str, float]:
    """Minutes per method, summed over the logs: from its ``== method (HH:MM:SS)`` line (UTC) to the next one
    (the last to ``== end``, or to the log's last write when a log has no end line)."""
    minutes: dict[str, float] = {}
    for log in logs:
        for method, spent in _log_minutes(log).items():
            minutes[method] = minutes.get(method, 0.0) + spent
    return minutes


def _log_minutes(log: Path) -> dict[str, float]:
    marks = re.findall(r"^== (\S+) \((\d\d:\d\d:\d\d)\)$", log.read_text(), flags=re.M)
    times = [(m, datetime.strptime(t, "%H:%M:%S")) for m, t in marks]
    if not times or times[-1][0] != "end":  # a log without the end line (stopped, or older): its last write
        last_write = datetime.fromtimestamp(log.stat().st_mtime, tz=timezone.utc).strftime("%H:%M:%S")
        times.append(("end", datetime.strptime(last_write, "%H:%M:%S")))
    minutes = {}
    for (method, start), (_, end) in pairwise(times):
        minutes[method] = ((end - start) % timedelta(days=1)).total_seconds() / 60
    return minutes


def main(root: Path, logs: list[Path], plot: Path | None) -> None:
    sweeps = {p.name: load_json(p / "sweep.json") for p in sorted(root.iterdir()) if p.is_dir()}
    sweeps = {m: s for m, s in sweeps.items() if s and s.get("refit")}
    order = [m for m in BASELINES if m in sweeps] + sorted(set(sweeps) - set(BASELINES))
    refits = {m: sweeps[m]["refit"] for m in order}
    seeds = ", ".join(str(r["seed"]) for r in next(iter(refits.values()))["runs"]) if refits else ""
    minutes = _wall_minutes(logs)
    epochs = root.name.removeprefix("e")
    print(f"# CIFAR-10, CPU tier: every method tuned alike by `featdistill sweep` ({epochs} epochs)\n")
    print(
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    logged = "".join(f" --log runs/bench/{log.name}" for log in logs)
    drawn = f" --plot benchmarks/results/{plot.name}" if plot else ""
    print(
        f"- command: `EPOCHS={epochs} bash benchmarks/cifar10_methods.sh > runs/bench/cifar10_methods_e{epochs}.log`"
        f", then `python benchmarks/cifar10_methods_report.py runs/bench/cifar10_methods/e{epochs}{logged}{drawn}`"
        f" (raw logs: {', '.join(f'`{log.name}`' for log in logs) or 'none given'})"
    )
    print(
        "- data: `../shared/data/cifar10` (JPEG CIFAR-10), 5,000 class-balanced train images (`data.limit`), "
        "scored on the 10,000 test images; random crop (pad 4) + flip"
    )
    print(
        "- models: teacher resnet20 (`cifar10_teacher_resnet20.pt`, 30 epochs, 70.52 % test top-1), student "
        f"resnet8; {epochs} epochs, SGD lr 0.05 cosine, wd 5e-4, batch 64 "
        "(`configs/classification/cifar10_cpu_cwt.yaml`)"
    )
    print(
        "- protocol, the same for every method: `distill.alpha: auto` with the target ratio (α · method loss / "
        "task loss at the start) swept over 0.3, 1, 3, 10, 30, 100 in lockstep on one teacher forward; the "
        "best ratio chosen on the holdout split (20 % of the 5,000 images, seed 0); then refit on all 5,000 "
        f"images with seeds {seeds} and scored on the test split. Feature methods distill layer3 → layer3, "
        "KD the logits (τ = 4)\n"
    )
    print(
        "| method | best ratio | α at refit (mean of seeds) | test top-1 mean ± std | 95 % interval "
        "| seeds | Δ vs none | Welch t vs cwt | wall (min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    plain, cwt = refits.get("none"), refits.get("cwt")
    for m in order:
        r, best = refits[m], (sweeps[m].get("best") or {}).get("values", {})
        ratio = best.get("distill.auto_ratio", "")
        alphas = refit_alphas(r)  # one method per run here
        alpha = f"{sum(alphas) / len(alphas):.3g}" if alphas else ""
        delta = f"{r['mean'] - plain['mean']:+.2f}" if plain else ""
        t = f"{welch_t(r, cwt):+.1f}" if cwt and m != "cwt" else ""
        wall = f"{minutes[m]:.1f}" if m in minutes else ""
        print(
            f"| {m} | {ratio} | {alpha} | {r['mean']:.2f} ± {r['std']:.2f} "
            f"| {r['mean'] - r['ci95']:.2f} – {r['mean'] + r['ci95']:.2f} | {r['n']} | {delta} | {t} | {wall} |"
        )
    if cwt and plain:
        others = {m: refits[m] for m in BASELINES if m in refits and m not in ("cwt", "none")}
        best_other = max(others, key=lambda m: others[m]["mean"]) if others else None
        gain = cwt["mean"] - plain["mean"]
        print(
            f"\nGoal: CWT ≥ +{GOAL} points over the plain student: {'met' if gain >= GOAL else 'NOT met'} "
            f"({gain:+.2f})."
        )
        if best_other:
            o = others[best_other]
            beats = cwt["mean"] >= o["mean"]
            print(
                f"CWT ≥ every baseline: {'met' if beats else 'NOT met'} (best other: {best_other} "
                f"{o['mean']:.2f} ± {o['std']:.2f}, Welch t of CWT against it {welch_t(cwt, o):+.1f})."
            )
    swept = [m for m in order if len(sweeps[m]["variants"]) > 1]  # a one-variant sweep refits unscored
    print("\nHoldout top-1 of each ratio (seed 0, 1,000 holdout images), from which the ratio was chosen:\n")
    print("| method | " + " | ".join(str(r) for r in _ratios(sweeps)) + " |")
    print("|---|" + "---|" * len(_ratios(sweeps)))
    for m in swept:
        cells = {v["values"].get("distill.auto_ratio"): v for v in sweeps[m]["variants"]}
        row = []
        for ratio in _ratios(sweeps):
            v = cells.get(ratio)
            row.append("" if v is None else "failed" if v["metric"] is None else f"{v['metric']:.2f}")
        print(f"| {m} | " + " | ".join(row) + " |")
    if plot is not None:
        _plot(plot, {m: sweeps[m] for m in swept}, refits)
        print(f"\n![holdout curves and test intervals]({plot.name})")
    failed = [(m, v) for m in swept for v in sweeps[m]["variants"] if v["status"] != "done"]
    if failed:
        print("\nVariants that did not finish:\n")
        for m, v in failed:
            print(f"- {m} {v['name']}: {v['status']}: {v['error']}")


def _ratios(sweeps: dict) -> list[float]:
    """Every auto ratio that some method swept, in increasing order."""
    values = {v["values"].get("distill.auto_ratio") for s in sweeps.values() for v in s["variants"]}
    return sorted(values - {None})


def _plot(path: Path, sweeps: dict[str, dict], refits: dict[str, dict]) -> None:
    """Left: each method's holdout top-1 against the ratio. Right: each method's test mean and 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, tests) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for method, sweep in sweeps.items():
        points = sorted(
            (v["values"]["distill.auto_ratio"], v["metric"])
            for v in sweep["variants"]
            if v["metric"] is not None
        )
        ablation = method not in BASELINES  # CWT's hidden width and layers: dashed
        curves.plot(*zip(*points), marker="o", linestyle="--" if ablation else "-", label=method)
    curves.set(xscale="log", xlabel="distill.auto_ratio (α · method loss / task loss at the start)")
    curves.set(ylabel="holdout top-1 (%)", title="choice: holdout split, seed 0")
    curves.legend(fontsize=8)
    curves.grid(alpha=0.3)
    names = list(refits)
    means = [refits[m]["mean"] for m in names]
    errors = [refits[m]["ci95"] if refits[m]["n"] > 1 else 0 for m in names]
    tests.errorbar(means, range(len(names)), xerr=errors, fmt="o", capsize=3)
    tests.set_yticks(range(len(names)), names)
    tests.invert_yaxis()
    tests.set(xlabel="test top-1 (%), mean and 95 % interval", title="refit at the chosen ratio")
    tests.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="runs/bench/cifar10_methods/e<EPOCHS>")
    parser.add_argument(
        "--log",
        type=Path,
        action="append",
        default=[],
        help="a log of the benchmark, for wall times (repeatable)",
    )
    parser.add_argument("--plot", type=Path, help="write the holdout curves and test intervals here (PNG)")
    args = parser.parse_args()
    main(args.root, args.log, args.plot)
