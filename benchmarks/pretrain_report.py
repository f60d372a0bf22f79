"""The table of benchmarks/pretrain.sh: per arm (no pretraining, CWT, cosine, FitNets), the kNN and linear probe
top-1 of the backbone on CIFAR-10 classes 5-9 and the top-1 after fine-tuning on 50 labels per class there.

Usage: python benchmarks/pretrain_report.py runs/bench/pretrain > benchmarks/results/pretrain.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from featdistill.sweep.stats import mean_interval, welch_t

ARMS = ("none", "cwt", "cosine", "fitnets")
SEEDS = (0, 1, 2)


def cell(stats: dict) -> str:
    if stats.get("n", 0) == 0:
        return "—"
    half = stats.get("ci95")
    spread = f" ± {stats['std']:.2f} (95 % CI ± {half:.2f})" if stats["n"] > 1 and half is not None else ""
    return f"{stats['mean']:.2f}{spread}"


def main(out: str) -> None:
    root = Path(out)
    rows = {}
    for arm in ARMS:
        probes = [
            json.loads((root / "probe" / f"{arm}-{s}.json").read_text())
            for s in SEEDS
            if (root / "probe" / f"{arm}-{s}.json").is_file()
        ]
        tuned = [
            json.loads((root / "finetune" / f"{arm}-{s}" / "metrics.json").read_text())["top1"]
            for s in SEEDS
            if (root / "finetune" / f"{arm}-{s}" / "metrics.json").is_file()
        ]
        rows[arm] = {
            "knn": mean_interval([p["knn_top1"] for p in probes]),
            "linear": mean_interval([p["linear_top1"] for p in probes]),
            "finetune": mean_interval(tuned),
        }
    teacher = json.loads((root / "teacher" / "metrics.json").read_text())
    print(
        "| backbone (ResNet-8) | kNN top-1, classes 5-9 | linear probe top-1 | fine-tuned, 50 labels/class | Δ fine-tune vs none (Welch t) |"
    )
    print("|---|---|---|---|---|")
    for arm, stats in rows.items():
        delta = stats["finetune"].get("mean", float("nan")) - rows["none"]["finetune"].get(
            "mean", float("nan")
        )
        t = welch_t(stats["finetune"], rows["none"]["finetune"])
        name = "no pretraining (random init)" if arm == "none" else f"distilled, {arm}"
        extra = "" if arm == "none" else f"{delta:+.2f} (t = {t:.2f})"
        print(
            f"| {name} | {cell(stats['knn'])} | {cell(stats['linear'])} | {cell(stats['finetune'])} | {extra} |"
        )
    print(
        f"\nteacher (ResNet-20, classes 0-4 only): top-1 {teacher['top1']:.2f} % on 500 test images of classes 0-4"
    )


if __name__ == "__main__":
    main(sys.argv[1])
