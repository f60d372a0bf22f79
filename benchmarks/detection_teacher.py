"""What stopping a detection teacher after its FPN saves: the teacher's share of a distillation step.

For each detector family (ResNet-50-FPN teacher, random init, eval mode, no grad) this times
(A) the whole teacher forward, ``teacher(images)`` (backbone, FPN, RPN / heads and post-processing), and
(B) what the distiller runs, ``Distiller.teacher_features`` (preprocessing, backbone and FPN, then stops),
in rounds that alternate the two, and reports medians and B / A.

    python benchmarks/detection_teacher.py --device cpu --size 512 --batch 1 --rounds 5
    python benchmarks/detection_teacher.py --device cuda --size 800 --batch 2 --rounds 20
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from featdistill import Distiller
from featdistill.tasks.detection.models import build_detector, fpn_level_names
from featdistill.tasks.detection.task import teacher_forward
from machine import cpu_name

FAMILIES = ("fasterrcnn", "maskrcnn", "retinanet", "fcos")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_family(family: str, args: argparse.Namespace) -> tuple[float, float]:
    """Median seconds of (whole teacher forward, teacher up to its FPN)."""
    torch.manual_seed(0)
    height, width = args.size, args.size * 4 // 3
    teacher = build_detector(family, 91, backbone="resnet50", min_size=height, max_size=width)
    student = build_detector(family, 91, backbone="resnet18", min_size=height, max_size=width)
    teacher, student = teacher.to(args.device).eval(), student.to(args.device)
    images = [torch.rand(3, height, width, device=args.device) for _ in range(args.batch)]
    levels = fpn_level_names(student)
    distiller = Distiller(
        student,
        teacher,
        pairs=[(f"backbone[{k}]", f"backbone[{k}]") for k in levels],
        sample_input=(images,),
        teacher_forward=teacher_forward,
    )
    steps = {"whole": lambda: teacher(images), "to_fpn": lambda: distiller.teacher_features(images)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.no_grad():
        for round_ in range(args.warmup + args.rounds):
            for name, step in steps.items():
                _sync(args.device)
                start = time.perf_counter()
                step()
                _sync(args.device)
                if round_ >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    return statistics.median(times["whole"]), statistics.median(times["to_fpn"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512, help="shorter image side (longer = 4/3 of it)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    lines = [
        f"### {machine} ({args.device}), {args.size}x{args.size * 4 // 3} px, batch {args.batch}",
        "",
        f"- Python {platform.python_version()}, torch {torch.__version__}, {args.threads} CPU threads; "
        f"median of {args.rounds} rounds after {args.warmup} warm-up",
        "",
        "| teacher (R50-FPN) | whole forward ms | up to FPN ms | up to FPN / whole |",
        "|---|---:|---:|---:|",
    ]
    for family in FAMILIES:
        whole, to_fpn = time_family(family, args)
        lines.append(f"| {family} | {whole * 1e3:.1f} | {to_fpn * 1e3:.1f} | {to_fpn / whole:.2f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
