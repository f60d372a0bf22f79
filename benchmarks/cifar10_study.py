"""CIFAR-10 study, GPU tier: every method tuned alike, then CWT's hidden width and layers (ablations).

The CPU benchmark (``cifar10_cpu.py``) swept α for CWT only and reused literature α for the baselines. This
study gives every method the same tuning budget and keeps the selection off the test set:

- same data, teacher and student schedule as the CPU benchmark (student ResNet-8, 5,000 class-balanced train
  images, 10 epochs; teacher = the committed ``cifar10_teacher_resnet20.pt``);
- sweep: four α values per method, one seed (``--sweep-seed``), scored on a **validation split** of 2,000
  *train* images that the student never trains on (``<data>/val``);
- final: each method at its best α, seeds ``0..--seeds-1``, scored on the 10,000 test images;
- ablations at CWT's best α: hidden width C_h = C_t/2 and 2·C_t (default C_t), and layer2 + layer3.

With ``--only`` and a runs file that holds only the sweep, a longer schedule (``--epochs``) can be checked
for a few methods at the α found on the short one.

Runs go to a process pool (``--jobs``) because a ResNet-8 leaves a GPU mostly idle. The data folder holds
``train`` (the first 500 images per class of CIFAR-10 train, the CPU benchmark's subset), ``val`` (the next
200 per class) and ``test``; ``--prepare-from`` copies them out of an ImageFolder CIFAR-10 (16 MB):

    python benchmarks/cifar10_study.py --data .gpu/cifar10 --prepare-from ../shared/data/cifar10
    python benchmarks/cifar10_study.py --data .gpu/cifar10 --device cuda --jobs 8 --results benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from cifar10_cpu import REPO, STUDENT, TEACHER, config, train
from machine import cpu_name
from runlog import load_done, mean_std, record

LAST = [["layer3", "layer3"]]
LAYER2_3 = [["layer2", "layer2"], *LAST]
GRIDS: dict[str, list[float]] = {
    "kd": [0.3, 1.0, 3.0, 9.0],
    "fitnets": [10.0, 30.0, 100.0, 300.0],
    "at": [30.0, 100.0, 300.0, 1000.0, 3000.0],
    "cwd": [1.0, 3.0, 10.0, 30.0, 100.0],
    "mgd": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    "cwt_linear": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "cwt": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
}  # four points each at first; one more wherever the best sat at an end of its grid
HIDDEN = {"cwt_hidden32": 32, "cwt_hidden128": 128}  # teacher layer3 has C_t = 64 channels


def distill(method: str, alpha: float, hidden: int | None = None, layers: list[list[str]] = LAST) -> dict:
    """The ``distill:`` section of one run."""
    if method == "kd":
        return {"pairs": [["fc", "fc", "kd"]], "alpha": alpha}
    section: dict[str, Any] = {"pairs": [[s, t, method] for s, t in layers], "alpha": alpha}
    if hidden is not None:
        section["options"] = {"cwt": {"hidden_channels": hidden}}
    return section


def tree(args: argparse.Namespace, name: str, seed: int, section: dict | None, split: str) -> dict:
    """One run's config: the CPU benchmark's, on ``--device``, scored on ``split``."""
    extra: dict[str, Any] = {}
    if section is not None:
        weights = REPO / "benchmarks" / "results" / "cifar10_teacher_resnet20.pt"
        extra = {"model": {"teacher": TEACHER, "teacher_weights": str(weights)}, "distill": section}
    cfg = config(args, name, STUDENT, seed, args.epochs, **extra)
    cfg["device"] = args.device
    cfg["data"]["val_split"] = split
    cfg["data"]["val_limit"] = args.test_images
    return cfg


def run_one(cfg: dict, threads: int) -> tuple[float, float, str]:
    """Pool worker: train one run and return (top-1, seconds, device name)."""
    torch.set_num_threads(threads)
    device = torch.cuda.get_device_name() if cfg["device"].startswith("cuda") else cpu_name()
    return (*train(cfg), device)


def run_all(
    args: argparse.Namespace, jobs: dict[str, tuple[dict, dict]], done: dict, runs_file: Path
) -> None:
    """Train every job not yet in ``done`` in the pool; a failed run is recorded with its error."""
    todo = {name: job for name, job in jobs.items() if name not in done}
    if not todo or args.report_only:
        return
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {pool.submit(run_one, cfg, args.threads): name for name, (cfg, _) in todo.items()}
        for future in as_completed(futures):
            name = futures[future]
            row = {"run": name, **todo[name][1]}
            try:
                row["top1"], row["seconds"], row["device"] = future.result()
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {err}"
            record(runs_file, row)
            done[name] = row


def prepare(source: Path, target: Path, per_class_train: int, per_class_val: int = 200) -> None:
    """Copy the study's train / val / test folders out of an ImageFolder CIFAR-10 at ``source``."""
    for cls in sorted(p.name for p in (source / "train").iterdir() if p.is_dir()):
        files = sorted((source / "train" / cls).iterdir())
        picks = {
            "train": files[:per_class_train],
            "val": files[per_class_train : per_class_train + per_class_val],
            "test": sorted((source / "test" / cls).iterdir()),
        }
        for split, chosen in picks.items():
            (target / split / cls).mkdir(parents=True, exist_ok=True)
            for file in chosen:
                shutil.copy2(file, target / split / cls / file.name)
    print(f"wrote {target}/{{train,val,test}}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/, val/ and test/")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/featdistill-bench/cifar10_study"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/featdistill-bench/cache_study"))
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--test-images", type=int, default=None, help="score on the first N (default: all)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep-seed", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=8, help="runs at once")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per run")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from the runs file; train nothing"
    )
    parser.add_argument(
        "--prepare-from", type=Path, help="copy the data folder from this CIFAR-10, then stop"
    )
    parser.add_argument("--only", help="comma-separated final variants to run (e.g. none,cwt), default: all")
    args = parser.parse_args()
    if args.prepare_from is not None:
        prepare(args.prepare_from, args.data, args.train_images // 10)
        return
    args.results.mkdir(parents=True, exist_ok=True)
    runs_file = args.results / "cifar10_study_runs.jsonl"
    done = load_done(runs_file)
    wall = time.perf_counter()

    sweep_jobs = {
        f"sweep_{m}_a{a:g}": (
            tree(args, f"sweep_{m}_a{a:g}", args.sweep_seed, distill(m, a), "val"),
            {"phase": "sweep", "method": m, "alpha": a, "seed": args.sweep_seed},
        )
        for m, grid in GRIDS.items()
        for a in grid
    }
    run_all(args, sweep_jobs, done, runs_file)
    best = {m: best_alpha(done, m) for m in GRIDS}
    print(f"best alpha on val: {best}", flush=True)

    variants: dict[str, dict | None] = {"none": None}
    variants.update({m: distill(m, best[m]) for m in GRIDS})
    variants.update({name: distill("cwt", best["cwt"], hidden=h) for name, h in HIDDEN.items()})
    variants["cwt_layer2+3"] = distill("cwt", best["cwt"], layers=LAYER2_3)
    variants["fitnets_layer2+3"] = distill("fitnets", best["fitnets"], layers=LAYER2_3)
    if args.only:
        variants = {v: section for v, section in variants.items() if v in args.only.split(",")}
    final_jobs = {
        final_name(v, section, seed): (
            tree(args, final_name(v, section, seed), seed, section, "test"),
            {"phase": "final", "method": v, "alpha": section and section["alpha"], "seed": seed},
        )
        for v, section in variants.items()
        for seed in range(args.seeds)
    }
    run_all(args, final_jobs, done, runs_file)
    finals = {v: [] for v in variants}
    for name in final_jobs:
        if "top1" in done.get(name, {}):
            finals[done[name]["method"]].append(done[name])
    write_report(args, done, best, finals, time.perf_counter() - wall)


def final_name(variant: str, section: dict | None, seed: int) -> str:
    """A final run's name; it holds α, so a re-run after a wider sweep retrains only what changed."""
    alpha = "" if section is None else f"_a{section['alpha']:g}"
    return f"final_{variant}{alpha}_s{seed}"


def best_alpha(done: dict, method: str) -> float:
    """The α with the highest validation top-1 among the finished sweep runs of ``method``."""
    scored = [
        (r["top1"], r["alpha"])
        for r in done.values()
        if r.get("phase") == "sweep" and r["method"] == method and "top1" in r
    ]
    if not scored:
        raise RuntimeError(f"no finished sweep run for {method!r}; see the errors in the runs file")
    return max(scored)[1]


def write_report(
    args: argparse.Namespace, done: dict, best: dict, finals: dict[str, list], wall: float
) -> None:
    devices = sorted({r["device"] for r in done.values() if "device" in r})
    lines = [
        "# CIFAR-10 study (GPU tier): every method tuned alike, CWT ablations",
        "",
        f"- machine: {', '.join(devices)}, {args.jobs} runs at once, {args.threads} CPU threads each; Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"- command: `python benchmarks/cifar10_study.py --data DATA --device {args.device} --jobs {args.jobs}` (finished runs in the runs file are reused)",
        f"- student {STUDENT}, teacher {TEACHER} (`cifar10_teacher_resnet20.pt`), {args.train_images} train images, "
        f"{args.epochs} epochs, SGD lr 0.05 cosine, batch 64 (as `cifar10_cpu.py`)",
        f"- α sweep: seed {args.sweep_seed}, scored on 2,000 held-out *train* images (val); final: seeds "
        f"0..{args.seeds - 1} at each method's best α, scored on the 10,000 test images",
        f"- wall time of this invocation: {wall / 60:.1f} min",
        "",
        "## Final (test top-1, %)",
        "",
        "| method | α | top-1 mean ± std | seeds | Δ vs none |",
        "|---|---|---|---|---|",
    ]
    base = statistics.mean(r["top1"] for r in finals["none"]) if finals["none"] else float("nan")
    for v, rows in finals.items():
        if not rows:
            lines.append(f"| {v} | | not run | 0 | |")
            continue
        accs = [r["top1"] for r in rows]
        alpha = "" if rows[0]["alpha"] is None else f"{rows[0]['alpha']:g}"
        lines.append(
            f"| {v} | {alpha} | {mean_std(accs)} | {len(accs)} | {statistics.mean(accs) - base:+.2f} |"
        )
    lines += ["", f"## α sweep (val top-1, %, seed {args.sweep_seed})", ""]
    lines += ["| method | α: val top-1 | best α |", "|---|---|---|"]
    for m, grid in GRIDS.items():
        cells = []
        for a in grid:
            row = done.get(f"sweep_{m}_a{a:g}", {})
            outcome = f"{row['top1']:.2f}" if "top1" in row else "failed" if "error" in row else "not run"
            cells.append(f"{a:g}: {outcome}")
        lines.append(f"| {m} | " + ", ".join(cells) + f" | {best[m]:g} |")
    errors = [r for r in done.values() if "error" in r]
    if errors:
        lines += ["", "Failed runs:", ""] + [f"- {r['run']}: {r['error']}" for r in errors]
    (args.results / "cifar10_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"best": best}))


if __name__ == "__main__":
    main()
