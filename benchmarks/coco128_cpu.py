"""CPU-tier coco128 benchmark: Faster R-CNN students without distillation, with CWT and with MGD (FPN P2-P5).

Protocol (sized for a 2-core CPU: about 45 min on one idle core, less with two): a *fitting test*. The first
``--images`` images of coco128 (real COCO train2017 images and annotations) are both the training and the
evaluation set: 128 images are far too few to train a detector from random init that generalises to held-out
images, so AP here measures how well a student fits its training images, and whether a teacher's features
help it fit faster. All detectors are Faster R-CNN on an FPN, randomly initialised (nothing is downloaded),
at a shorter side of ``--min-size`` px. The teacher, ResNet-34-FPN, is trained once by this script for
``--teacher-epochs`` (default: twice the students' epochs), so it is stronger than a student by capacity
and by training; its AP is reported. Students, ResNet-18-FPN, share one schedule (SGD lr 0.01 for 4 images
per step, 1 warm-up epoch, ×0.1 at 2/3 and 11/12 of ``--epochs``, flip + zoom jitter, gradient clipping 10)
and run with seeds ``0..--seeds-1``. CWT and MGD distill each FPN level P2-P5 (``backbone[0..3]``) with the
same α (both losses are sums of squares over the maps, divided by the batch). α = 5e-6 makes the first
distillation loss about 4x the detection loss with such a teacher (no sweep: CPU time).

Finished runs are appended to ``<results>/coco128_cpu_runs.jsonl`` and skipped when the script is run again,
so an interrupted benchmark resumes where it stopped. ``--quick`` (8 images, 1 student epoch, 1 seed) checks
every step in a few minutes and writes its report under ``--runs``, not ``--results``.

    python benchmarks/coco128_cpu.py 2>&1 | tee benchmarks/results/coco128_cpu.log
    python benchmarks/coco128_cpu.py --quick --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from featdistill.config import parse_config
from featdistill.run import build_trainer
from machine import cpu_name
from runlog import load_done, mean_std, record

REPO = Path(__file__).resolve().parents[1]
TEACHER, STUDENT = "resnet34", "resnet18"
LEVELS = [[f"backbone[{k}]", f"backbone[{k}]"] for k in range(4)]
METHODS: dict[str, dict[str, Any]] = {
    "none": {},
    "cwt": {"method": "cwt"},
    "mgd": {"method": "mgd"},
}
# Fewer proposals and sampled RoIs than the COCO defaults (CPU cost; few objects per image); a low score
# threshold so that the weak detectors of a short schedule still return ranked detections for COCOeval.
DETECTOR = {
    "rpn_pre_nms_top_n_train": 500,
    "rpn_post_nms_top_n_train": 200,
    "rpn_pre_nms_top_n_test": 250,
    "rpn_post_nms_top_n_test": 100,
    "box_batch_size_per_image": 64,
    "box_score_thresh": 0.001,
}


def config(args: argparse.Namespace, name: str, backbone: str, seed: int, epochs: int, **extra: Any) -> dict:
    """One run: Faster R-CNN with ``backbone`` on the fitting set, ``epochs`` epochs, ``seed``."""
    return {
        "task": "detection",
        "device": "cpu",
        "data": {
            "name": "coco",
            "root": str(args.data),
            "limit": args.images,
            "val_limit": args.images,
            "batch_size": 4,
            "eval_batch_size": 8,
            "options": {"skip_empty": True, "flip_prob": 0.5, "scale_range": [1.0, 1.25]},
        },
        "model": {
            "student": "fasterrcnn",
            "options": {
                "min_size": args.min_size,
                "max_size": args.min_size * 7 // 4,
                **DETECTOR,
                "student": {"backbone": backbone},
                "teacher": {"backbone": TEACHER},
            },
            **extra.pop("model", {}),
        },
        "train": {
            "epochs": epochs,
            "lr": 0.01,  # 0.04 per 16 images: from random init, 0.005 fits too slowly for this budget
            "weight_decay": 1e-4,
            "schedule": "step",
            "milestones": [round(epochs * 2 / 3), round(epochs * 11 / 12)],
            "warmup_epochs": 1.0,
            "clip_grad": 10.0,
            "seed": seed,
            "log_every": 8,
            "eval_every": epochs,
        },
        "output": {"dir": str(args.runs / name), "tensorboard": False, "progress": False},
        **extra,
    }


def train(tree: dict) -> dict[str, float]:
    start = time.perf_counter()
    metrics = build_trainer(parse_config(tree)).fit()
    return {"AP": metrics["bbox/AP"], "AP50": metrics["bbox/AP50"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco128")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/featdistill-bench/coco128"))
    parser.add_argument("--images", type=int, default=32, help="first N images: training = evaluation set")
    parser.add_argument("--min-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: 2 x --epochs")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=5e-6, help="CWT and MGD weight")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a loaded machine)")
    parser.add_argument(
        "--quick", action="store_true", help="8 images, 1 epoch, 1 seed: a smoke run (report in --runs)"
    )
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs, args.teacher_epochs, args.seeds = 8, 1, 2, 1
        args.runs = args.runs.with_name(args.runs.name + "_quick")
        args.results = args.runs  # a smoke run leaves the committed results alone
    args.teacher_epochs = args.teacher_epochs or 2 * args.epochs
    torch.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = "coco128_cpu_quick" if args.quick else "coco128_cpu"
    runs_file = args.results / f"{stem}_runs.jsonl"
    done = load_done(runs_file)
    wall = time.perf_counter()

    teacher_ckpt = args.runs / "teacher" / "last.pt"
    if "teacher" not in done or not teacher_ckpt.exists():
        result = train(config(args, "teacher", TEACHER, 0, args.teacher_epochs))
        record(runs_file, {"run": "teacher", "method": "teacher", "seed": 0, **result})
        done = load_done(runs_file)

    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in range(args.seeds):
        for method, spec in METHODS.items():
            name = f"{method}_s{seed}"
            if name not in done:
                extra: dict[str, Any] = {}
                if spec:
                    extra = {
                        "model": {"teacher": "fasterrcnn", "teacher_weights": str(teacher_ckpt)},
                        "distill": {"method": spec["method"], "pairs": LEVELS, "alpha": args.alpha},
                    }
                result = train(config(args, name, STUDENT, seed, args.epochs, **extra))
                done[name] = {"run": name, "method": method, "seed": seed, "alpha": args.alpha, **result}
                record(runs_file, done[name])
            rows[method].append(done[name])
    write_report(args, stem, done["teacher"], rows, time.perf_counter() - wall)


def write_report(
    args: argparse.Namespace, stem: str, teacher: dict, rows: dict[str, list[dict]], wall: float
) -> None:
    command = shlex.join(["python", "benchmarks/coco128_cpu.py", *sys.argv[1:]])
    lines = [
        f"# coco128, CPU tier: Faster R-CNN R18-FPN student, CWT vs MGD vs none{' (--quick)' if args.quick else ''}",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch "
        f"threads; Python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}",
        f"- command: `{command}`",
        f"- protocol: fitting test, the first {args.images} images of coco128 are both training and "
        "evaluation set (AP measures fitting, not generalisation); COCO AP over the categories present",
        f"- input: shorter side {args.min_size} px; flip + zoom jitter [1, 1.25]; batch 4; random init",
        f"- teacher Faster R-CNN {TEACHER}-FPN, {args.teacher_epochs} epochs (seed 0): "
        f"AP {100 * teacher['AP']:.2f}, AP50 {100 * teacher['AP50']:.2f}, {teacher['seconds']:.0f} s",
        f"- students Faster R-CNN {STUDENT}-FPN, {args.epochs} epochs, SGD lr 0.01 (batch 4), step decay, "
        f"seeds 0..{args.seeds - 1}; CWT and MGD on P2-P5 with α = {args.alpha:g}",
        f"- wall time of this invocation: {wall / 60:.1f} min (runs skipped when already recorded); "
        f"per-run seconds are in `{stem}_runs.jsonl`",
        "",
        "| method | AP mean ± std (%) | AP50 mean ± std (%) | seeds | Δ AP vs none | mean s/run |",
        "|---|---|---|---|---|---|",
    ]
    base = statistics.mean(r["AP"] for r in rows["none"])
    for method, rs in rows.items():
        ap, ap50 = [r["AP"] for r in rs], [r["AP50"] for r in rs]
        secs = statistics.mean(r["seconds"] for r in rs)
        delta = 100 * (statistics.mean(ap) - base)
        lines.append(
            f"| {method} | {mean_std(ap, 100)} | {mean_std(ap50, 100)} | {len(rs)} | {delta:+.2f} | {secs:.0f} |"
        )
    lines += [
        "",
        f"Teacher minus plain student: {100 * (teacher['AP'] - base):+.2f} AP (a distillation comparison needs a "
        f"clearly stronger teacher). With {args.seeds} seed(s), differences within about one std are noise.",
    ]
    report = "\n".join(lines) + "\n"
    (args.results / f"{stem}.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
