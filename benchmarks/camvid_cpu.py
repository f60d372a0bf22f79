"""CPU-tier CamVid benchmark: PSPNet-R18 student plain vs CWT vs CWD (logits) from a stronger teacher.

Protocol (2-core CPU, whole run sized to ``--budget-min``, default 85 min): the real CamVid train split
(367 images, 180x240), evaluated whole on the test split (233 images), 11 classes, random init everywhere
(nothing is downloaded). The runs are the shipped configs ``configs/segmentation/camvid_cpu_*.yaml`` with
``--set``-style overrides (root, epochs, seed, output): first the teacher, a PSPNet-R18 (``--teacher-backbone``)
trained ``--teacher-factor`` (3) times longer than the students, then for every seed a plain PSPNet-R18
student, a CWT student (``backbone.layer4``, α = 2e-5 · 64² / (crop/8)², the paper's α per distilled
location) and a CWD student (logits, loss weight 3, τ 4). Before training, a few iterations of every kind of run are timed and
the number of epochs is chosen so that the whole benchmark fits the budget; the choice is kept in
``<runs>/schedule.json`` and finished runs in ``<runs>/runs.jsonl``, so an interrupted benchmark resumes.

    python benchmarks/camvid_cpu.py --data ../shared/data/camvid 2>&1 | tee benchmarks/results/camvid_cpu.log
    python benchmarks/camvid_cpu.py --quick   # 2-3 minute check of the whole pipeline, report in /tmp
    python benchmarks/camvid_cpu.py --plan    # only time the runs and print the schedule they give

Writes ``benchmarks/results/camvid_cpu.md`` (machine, versions, command, schedule, mean ± std mIoU per
method, wall times) and ``camvid_cpu.png`` (test images, ground truth and predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from featdistill.config import load_config
from featdistill.engine import load_safely
from featdistill.run import build_trainer, get_task
from featdistill.tasks.segmentation.augment import build_eval_transform
from featdistill.tasks.segmentation.data import CAMVID_CLASSES, CamVid
from machine import cpu_name
from runlog import mean_std

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "segmentation"
METHODS = {"none": "camvid_cpu_student.yaml", "cwt": "camvid_cpu_cwt.yaml", "cwd": "camvid_cpu_cwd.yaml"}
NAMES = {"none": "PSPNet-R18 plain", "cwt": "PSPNet-R18 + CWT", "cwd": "PSPNet-R18 + CWD (logits)"}
TEACHER_CONFIG = "camvid_cpu_teacher.yaml"
SETTINGS = ("data", "seeds", "teacher_factor", "teacher_backbone", "crop", "batch_size", "limit", "val_limit")
# The usual CamVid colours (SegNet), one per class in CAMVID_CLASSES order; ignored pixels are black.
PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]


def cwt_alpha(crop: int) -> float:
    """The paper's α (2e-5 on a 64x64 layer4 map) per distilled location, for a ``crop`` at stride 8."""
    return 2e-5 * 64 * 64 / (crop / 8) ** 2


def overrides(
    args: argparse.Namespace, name: str, method: str, seed: int, epochs: int, teacher: Path | None = None
) -> list[str]:
    """``--set`` values turning the shipped config of ``method`` (or the teacher's) into one benchmark run."""
    items = [
        f"data.root={args.data}",
        f"data.batch_size={args.batch_size}",
        f"data.options.crop_size={args.crop}",
        f"train.epochs={epochs}",
        f"train.eval_every={epochs}",
        f"train.seed={seed}",
        f"output.dir={args.runs / name}",
        "output.progress=false",
    ]
    if args.limit is not None:  # decode only the images used instead of whole splits
        items += [f"data.limit={args.limit}", f"data.val_limit={args.val_limit}", "data.in_memory=false"]
    if method == "teacher":
        items.append(f"model.options.backbone={args.teacher_backbone}")
    elif method != "none":
        items.append(f"model.options.teacher.backbone={args.teacher_backbone}")
    if teacher is not None:
        items.append(f"model.teacher_weights={teacher}")
    if method == "cwt":
        items.append(f"distill.alpha={cwt_alpha(args.crop):.3g}")
    return items


def command(config: str, items: list[str]) -> str:
    """The ``featdistill train`` command line equivalent to one run."""
    sets = " ".join(f"--set {shlex.quote(item)}" for item in items)
    return f"featdistill train configs/segmentation/{config} {sets}"


def measure(args: argparse.Namespace, steps: int) -> dict[str, float]:
    """Seconds per training step of each kind of run, per evaluated image, and to build a run."""
    times: dict[str, float] = {}
    kinds = {"teacher": TEACHER_CONFIG, **METHODS}
    for kind, config in kinds.items():
        start = time.perf_counter()
        items = overrides(args, f"timing_{kind}", kind, 0, 1)
        cfg = load_config(CONFIGS / config, [*items, "model.teacher_weights=null", "data.val_limit=8"])
        trainer = build_trainer(cfg)
        times["build"] = max(times.get("build", 0.0), time.perf_counter() - start)
        trainer.model.train()
        batches = trainer.train_loader.iterate(0)
        per_step = []
        for i in range(steps + 1):  # the first step warms up and is not counted
            batch = next(batches)
            start = time.perf_counter()
            trainer.train_step(batch)
            if i:
                per_step.append(time.perf_counter() - start)
        times[kind] = statistics.median(per_step)
        if kind in ("teacher", "none"):
            start = time.perf_counter()
            trainer.evaluate()
            times[f"eval_{kind}"] = (time.perf_counter() - start) / 8
        print(f"timing {kind}: {times[kind]:.2f} s/step", flush=True)
    return times


def size_schedule(args: argparse.Namespace, times: dict[str, float], spent: float) -> dict[str, Any]:
    """Student epochs such that the teacher, seeds x methods and their evaluations fit the budget."""
    n_eval = args.val_limit if args.limit is not None else 233
    steps_per_epoch = (args.limit or 367) // args.batch_size
    runs = 1 + args.seeds * len(METHODS)
    fixed = runs * times["build"] + n_eval * (
        times["eval_teacher"] + args.seeds * len(METHODS) * times["eval_none"]
    )
    per_student_step = args.teacher_factor * times["teacher"] + args.seeds * sum(times[m] for m in METHODS)
    left = args.budget_min * 60 - spent - fixed
    epochs = max(1, int(left / (per_student_step * steps_per_epoch)))
    estimate = spent + fixed + epochs * steps_per_epoch * per_student_step
    return {
        "epochs": epochs,
        "teacher_epochs": args.teacher_factor * epochs,
        "steps_per_epoch": steps_per_epoch,
        "estimated_min": estimate / 60,
        "times": times,
    }


def load_rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["run"]: row for row in map(json.loads, path.read_text().splitlines()) if row}


def train(
    args: argparse.Namespace, rows_file: Path, done: dict, name: str, config: str, items: list[str]
) -> dict:
    """Train one run unless ``runs.jsonl`` already has it; returns its record."""
    if name in done:
        return done[name]
    start = time.perf_counter()
    metrics = build_trainer(load_config(CONFIGS / config, items)).fit()
    row = {
        "run": name,
        "miou": metrics["miou"],
        "pixel_acc": metrics["pixel_acc"],
        "seconds": time.perf_counter() - start,
        "command": command(config, items),
    }
    with open(rows_file, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    done[name] = row
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/featdistill-bench/camvid"))
    parser.add_argument("--budget-min", type=float, default=85.0, help="wall time the schedule is sized to")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--teacher-factor", type=int, default=3, help="teacher epochs / student epochs")
    parser.add_argument(
        "--teacher-backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"]
    )
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="2-3 minute check: 16 images, 64 crop, report in /tmp"
    )
    parser.add_argument("--plan", action="store_true", help="only time the runs and print the schedule")
    args = parser.parse_args()
    args.limit, args.val_limit = None, None
    if args.quick:
        args.limit, args.val_limit, args.crop, args.batch_size = 16, 4, 64, 4
        args.budget_min, args.teacher_factor = 2.5, 2
        args.runs = args.runs.with_name(args.runs.name + "-quick")
        args.results = args.runs
        shutil.rmtree(args.runs, ignore_errors=True)  # a check always starts from scratch
    torch.set_num_threads(args.threads)
    args.runs.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    load = os.getloadavg()[0]

    schedule_file = args.runs / "schedule.json"
    if args.plan:
        times = measure(args, steps=1 if args.quick else 3)
        print(json.dumps(size_schedule(args, times, time.perf_counter() - wall), indent=2))
        return
    settings = {k: str(getattr(args, k)) for k in SETTINGS}
    if schedule_file.exists():
        schedule = json.loads(schedule_file.read_text())
        if schedule["settings"] != settings:
            raise SystemExit(
                f"{args.runs} holds a benchmark with other settings ({schedule['settings']}); "
                "pass another --runs folder or delete it"
            )
    else:
        times = measure(args, steps=1 if args.quick else 3)
        schedule = {**size_schedule(args, times, time.perf_counter() - wall), "settings": settings}
        schedule["load_average"] = load
        if schedule["epochs"] < 3 and not args.quick:
            print(
                f"warning: only {schedule['epochs']} student epoch(s) fit the budget at the measured step "
                f"times (1-min load average {load:.1f} on {os.cpu_count()} CPUs); run on an idle machine "
                "for a meaningful comparison",
                file=sys.stderr,
            )
        schedule_file.write_text(json.dumps(schedule, indent=2))
    print(f"schedule: {json.dumps(schedule)}", flush=True)

    rows_file = args.runs / "runs.jsonl"
    done = load_rows(rows_file)
    teacher_ckpt = args.runs / "teacher" / "last.pt"
    teacher_items = overrides(args, "teacher", "teacher", 0, schedule["teacher_epochs"])
    if "teacher" in done and not teacher_ckpt.exists():
        del done["teacher"]
    train(args, rows_file, done, "teacher", TEACHER_CONFIG, teacher_items)
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in range(args.seeds):
        for method, config in METHODS.items():
            name = f"{method}_s{seed}"
            teacher = None if method == "none" else teacher_ckpt
            items = overrides(args, name, method, seed, schedule["epochs"], teacher)
            results[method].append(train(args, rows_file, done, name, config, items))
    wall_min = (time.perf_counter() - wall) / 60
    report = write_report(args, schedule, done["teacher"], results, wall_min)
    plot_predictions(args, args.results / "camvid_cpu.png", done["teacher"], results)
    print(report)


def teacher_name(args: argparse.Namespace) -> str:
    return f"PSPNet-R{args.teacher_backbone.removeprefix('resnet')}"


def write_report(
    args: argparse.Namespace, schedule: dict, teacher: dict, results: dict[str, list[dict]], wall_min: float
) -> str:
    """Write ``camvid_cpu.md`` and return its text."""
    times = schedule["times"]
    spe = schedule["steps_per_epoch"]
    cmd = "python benchmarks/camvid_cpu.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# CamVid, CPU tier: PSPNet-R18 student, plain vs CWT vs CWD (real data)",
        "",
        *(["**Quick mode: a pipeline check on a few images, not a result.**", ""] if args.quick else []),
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads = {args.threads}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; 1-min load average when the step "
        f"times were measured: {schedule['load_average']:.1f}",
        f"- command: `{cmd.strip()}`",
        f"- data: `{args.data}`: CamVid train split ({args.limit or 367} images, 180x240), evaluated whole on "
        f"{args.val_limit or 233} test images; 11 classes, void ignored; crop {args.crop}, scale 0.75-1.5, "
        "flip, photometric jitter",
        f"- teacher {teacher_name(args)}, {schedule['teacher_epochs']} epochs; students PSPNet-R18, {schedule['epochs']} "
        f"epochs ({schedule['epochs'] * spe} iterations of batch {args.batch_size}); SGD lr 0.02 poly 0.9, "
        f"wd 5e-4; random init; seeds 0..{args.seeds - 1}",
        f"- CWT: backbone.layer4 → backbone.layer4, α = {cwt_alpha(args.crop):.3g}; CWD: logits, α = 3, τ = 4",
        "- measured s/step before training: "
        + ", ".join(f"{k} {v:.2f}" for k, v in times.items() if not k.startswith("eval") and k != "build")
        + f"; schedule sized to {args.budget_min:g} min (estimate {schedule['estimated_min']:.0f} min)",
        f"- wall time of this invocation: {wall_min:.1f} min (runs already in runs.jsonl are skipped)",
        "",
        "| model | test mIoU mean ± std (%) | pixel acc (%) | Δ mIoU vs plain | seeds | mean min/run |",
        "|---|---|---|---|---|---|",
        f"| teacher {teacher_name(args)} | {teacher['miou']:.2f} | {teacher['pixel_acc']:.2f} | | 1 | "
        f"{teacher['seconds'] / 60:.1f} |",
    ]
    base = statistics.mean(r["miou"] for r in results["none"])
    for method, rows in results.items():
        mious = [r["miou"] for r in rows]
        delta = "" if method == "none" else f"{statistics.mean(mious) - base:+.2f}"
        lines.append(
            f"| {NAMES[method]} | {mean_std(mious)} | {mean_std([r['pixel_acc'] for r in rows])} | {delta} | "
            f"{len(rows)} | {statistics.mean(r['seconds'] for r in rows) / 60:.1f} |"
        )
    lines += ["", "Each run is equivalent to:", "", "```"]
    lines += [teacher["command"]] + [rows[0]["command"] for rows in results.values()]
    lines += ["```", "", "![predictions](camvid_cpu.png)"]
    text = "\n".join(lines) + "\n"
    (args.results / "camvid_cpu.md").write_text(text)
    return text


@torch.no_grad()
def plot_predictions(
    args: argparse.Namespace, path: Path, teacher: dict, results: dict[str, list[dict]], count: int = 3
) -> None:
    """Test images, ground truth, and the teacher's and seed-0 students' predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = CamVid(args.data, "test")
    normalize = build_eval_transform()
    picks = [round(i * (len(dataset) - 1) / max(1, count - 1)) for i in range(count)]
    palette = torch.tensor([*PALETTE, *[(0, 0, 0)] * (256 - len(PALETTE))], dtype=torch.uint8)
    columns = {f"teacher {teacher_name(args)}": ("teacher", TEACHER_CONFIG)}
    columns |= {NAMES[m]: (f"{m}_s0", config) for m, config in METHODS.items()}
    models = {}
    for title, (run, config) in columns.items():
        cfg = load_config(
            CONFIGS / config, overrides(args, run, "teacher" if run == "teacher" else "none", 0, 1)
        )
        model = get_task(cfg).build_student()
        state = load_safely(args.runs / run / "last.pt", map_location="cpu")
        model.load_state_dict(state["student"])
        models[title] = model.eval()
    fig, axes = plt.subplots(count, 2 + len(models), figsize=(2.6 * (2 + len(models)), 2.2 * count))
    for row, index in enumerate(picks):
        image, label = dataset[index]
        panels = {"image": image.permute(1, 2, 0), "ground truth": palette[label]}
        normalized = normalize(image, label)[0][None]
        for title, model in models.items():
            panels[title] = palette[model(normalized)["out"].argmax(1)[0]]
        for col, (title, panel) in enumerate(panels.items()):
            ax = axes[row, col]
            ax.imshow(panel.numpy())
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=[c / 255 for c in rgb]) for rgb in PALETTE]
    fig.legend(handles, CAMVID_CLASSES, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
