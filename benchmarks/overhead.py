"""Overhead of a distillation step over its unavoidable parts, and against torchdistill's FitNets step.

For each teacher → student pair, in one process, the steps below run in rounds; every round runs each step
once, in a rotated order, so drift and load from other processes on a shared machine hit all steps alike:

  (A) plain student training step: forward, cross-entropy, backward, SGD step;
  (B) teacher forward under ``no_grad`` (the whole network, eval mode);
  (C) featdistill CWT step: ``Distiller`` forward (student + teacher stopped after its tapped layer + CWT
      transform), cross-entropy + CWT loss, backward, SGD step over student and transform;
  (D) featdistill FitNets step (``method="fitnets"``: 1x1 conv + BN regressor, MSE · 100), same loop;
  (E) torchdistill FitNets step, built with its own machinery: ``DistillationBox`` with the teacher truncated
      after the hint layer (``sequential``, as its FitNets sample configs do), the student wrapped in
      ``Connector4DAB`` (1x1 conv + BN connector, as ours), forward hooks on both, ``WeightedSumLoss`` of
      cross-entropy + 100 · MSE; one step = ``forward_process`` + ``post_forward_process`` (backward, SGD).

Goals: C / (A + B) <= 1.05 (the teacher does not run past the tapped layer, so B is an upper bound of what
the teacher costs inside C), and D <= E. Peak memory of C vs A is measured in separate child processes
(``--memory-probe``): the increase of the resident set size's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` after the models and the batch exist) over the resident size at that moment,
during two steps. It counts everything a step adds on top of the resident weights: activations kept for
backward, teacher activations, gradients, optimizer state, allocator slack.

Run: ``python benchmarks/overhead.py`` (about 4 minutes on 2 idle CPU cores, about 10 when other jobs share
them; torchdistill is installed separately with ``pip install torchdistill``, it is not a dependency of
featdistill). Writes ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import featdistill as fd
from featdistill.tasks.classification.models import build_classifier
from machine import cpu_name

STEPS = ("A", "B", "C", "D", "E")
NAMES = {
    "A": "(A) student training step",
    "B": "(B) teacher no-grad forward (whole network)",
    "C": "(C) featdistill CWT step",
    "D": "(D) featdistill FitNets step",
    "E": "(E) torchdistill FitNets step",
}


@dataclass(frozen=True)
class Setting:
    """One teacher → student pair with its batch and the distilled layer."""

    key: str
    teacher: str
    student: str
    num_classes: int
    batch: int
    size: int
    layer: str
    stem: tuple[str, ...]  # the teacher's top-level modules up to ``layer`` (torchdistill's truncation)


SETTINGS = {
    "cifar": Setting(
        "cifar", "resnet56", "resnet20", 10, 128, 32, "layer3", ("conv1", "bn1", "relu", "layer1", "layer2")
    ),
    "imagenet": Setting(
        "imagenet",
        "resnet34",
        "resnet18",
        1000,
        8,
        224,
        "layer4",
        ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"),
    ),
}

LR = 1e-4  # small, so that weights stay finite over the run on random data (timings are what matters)


def _models(s: Setting) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return build_classifier(s.student, s.num_classes).train(), build_classifier(
        s.teacher, s.num_classes
    ).eval()


def _batch(s: Setting) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(s.batch, 3, s.size, s.size, generator=generator)
    return x, torch.randint(s.num_classes, (s.batch,), generator=generator)


def _sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=5e-4)


def plain_step(student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """(A): one training step of the student alone."""
    optimizer = _sgd(student.parameters())

    def step() -> None:
        loss = F.cross_entropy(student(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def teacher_forward(teacher: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """(B): the whole teacher under no_grad."""

    def step() -> None:
        with torch.no_grad():
            teacher(x)

    return step


def featdistill_step(
    s: Setting, student: nn.Module, teacher: nn.Module, method: str, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    """(C)/(D): a Distiller step with ``method`` on the setting's layer pair."""
    distiller = fd.Distiller(
        student, teacher, pairs=[(s.layer, s.layer)], method=method, sample_input=x[:2], verbose=False
    ).train()
    optimizer = _sgd(distiller.parameters())

    def step() -> None:
        out = distiller(x)
        loss = F.cross_entropy(out.student, y) + out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def torchdistill_step(
    s: Setting, student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    """(E): torchdistill's FitNets with its DistillationBox, hooks, Connector4DAB and WeightedSumLoss."""
    from torchdistill.core.distillation import DistillationBox

    logging.getLogger("torchdistill").setLevel(logging.WARNING)
    with torch.no_grad():
        s_channels = _feature(student, s.layer, x[:2]).shape[1]
        t_channels = _feature(teacher, s.layer, x[:2]).shape[1]
    wrapper_path = f"student_model.{s.layer}"
    train_config = {
        "num_epochs": 1,
        "teacher": {
            "forward_proc": "forward_batch_only",
            "sequential": [*s.stem, s.layer],
            "forward_hook": {"input": [], "output": [s.layer]},
            "requires_grad": False,
        },
        "student": {
            "auxiliary_model_wrapper": {
                "key": "Connector4DAB",
                "kwargs": {
                    "connectors": {
                        "connector": {
                            "io": "output",
                            "path": wrapper_path,
                            "conv2d_kwargs": {
                                "in_channels": s_channels,
                                "out_channels": t_channels,
                                "kernel_size": 1,
                                "bias": False,
                            },
                            "bn2d_kwargs": {"num_features": t_channels},
                        }
                    }
                },
            },
            "forward_proc": "forward_batch_only",
            "sequential": [],
            "frozen_modules": [],
            "forward_hook": {"input": [], "output": [wrapper_path, "connector_dict.connector"]},
            "requires_grad": True,
        },
        "optimizer": {"key": "SGD", "kwargs": {"lr": LR, "momentum": 0.9, "weight_decay": 5e-4}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "ce": {
                        "criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
                        "criterion_wrapper": {
                            "key": "SimpleLossWrapper",
                            "kwargs": {
                                "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                                "target": {"uses_label": True},
                            },
                        },
                        "weight": 1.0,
                    },
                    "fitnet": {
                        "criterion": {"key": "MSELoss", "kwargs": {"reduction": "mean"}},
                        "criterion_wrapper": {
                            "key": "SimpleLossWrapper",
                            "kwargs": {
                                "input": {
                                    "is_from_teacher": False,
                                    "module_path": "connector_dict.connector",
                                    "io": "output",
                                },
                                "target": {"is_from_teacher": True, "module_path": s.layer, "io": "output"},
                            },
                        },
                        "weight": 100.0,
                    },
                }
            },
        },
    }
    box = DistillationBox(
        teacher, student, {}, train_config, torch.device("cpu"), None, distributed=False, lr_factor=1
    )
    box.teacher_model.eval()
    box.student_model.train()

    def step() -> None:
        loss = box.forward_process(x, y)
        box.post_forward_process(loss)

    return step


def _feature(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    taps = fd.FeatureTaps(model, [layer])
    with taps.capture(stop_early=True) as features:
        model(x)
    return features[layer]


def build_steps(s: Setting, kinds: str) -> dict[str, Callable[[], None]]:
    """The step functions of ``kinds`` (a subset of ABCDE), each with its own copy of the models."""
    student, teacher = _models(s)
    x, y = _batch(s)
    makers: dict[str, Callable[[], Callable[[], None]]] = {
        "A": lambda: plain_step(copy.deepcopy(student), x, y),
        "B": lambda: teacher_forward(copy.deepcopy(teacher), x),
        "C": lambda: featdistill_step(s, copy.deepcopy(student), copy.deepcopy(teacher), "cwt", x, y),
        "D": lambda: featdistill_step(s, copy.deepcopy(student), copy.deepcopy(teacher), "fitnets", x, y),
        "E": lambda: torchdistill_step(s, copy.deepcopy(student), copy.deepcopy(teacher), x, y),
    }
    return {k: makers[k]() for k in kinds}


def time_rounds(steps: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each step over ``rounds`` rounds (after ``warmup`` untimed ones), order rotated per round."""
    keys = list(steps)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(warmup + rounds):
        for i in range(len(keys)):
            key = keys[(r + i) % len(keys)]
            start = time.perf_counter()
            steps[key]()
            if r >= warmup:
                times[key].append(time.perf_counter() - start)
    return times


def memory_probe(s: Setting, kind: str, steps: int = 2) -> dict[str, float]:
    """Peak resident memory added by ``steps`` steps of ``kind`` over the resident size before them (MiB)."""
    step = build_steps(s, kind)[kind]
    rss_before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark VmHWM to the current RSS
    for _ in range(steps):
        step()
    return {"rss_before_mib": rss_before / 1024, "peak_added_mib": (_status_kib("VmHWM") - rss_before) / 1024}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _probe_in_child(key: str, kind: str, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-probe", key, kind, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _versions() -> str:
    try:
        import torchdistill

        td = torchdistill.__version__
    except ImportError:
        td = "not installed"
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"featdistill {fd.__version__}, torchdistill {td}"
    )


def report_setting(
    s: Setting, times: dict[str, list[float]], memory: dict[str, dict[str, float]]
) -> list[str]:
    """Markdown lines for one setting: raw timings, ratios (medians and per-round), memory, goals."""
    lines = [
        f"## {s.teacher} → {s.student}, batch {s.batch}, {s.size}×{s.size}, distilled layer `{s.layer}`",
        "",
        "| step | rounds | median ms | IQR ms (q1–q3) | mean ± std ms |",
        "|---|---:|---:|---:|---:|",
    ]
    med = {}
    for key, values in times.items():
        q1, q2, q3 = _quartiles(values)
        med[key] = q2
        lines.append(
            f"| {NAMES[key]} | {len(values)} | {1e3 * q2:.1f} | {1e3 * (q3 - q1):.1f} ({1e3 * q1:.1f}–{1e3 * q3:.1f}) "
            f"| {1e3 * statistics.mean(values):.1f} ± {1e3 * statistics.stdev(values):.1f} |"
        )
    per_round = [c / (a + b) for a, b, c in zip(times["A"], times["B"], times["C"])]
    q1, overhead, q3 = _quartiles(per_round)
    ratio = med["C"] / (med["A"] + med["B"])
    lines += [
        "",
        f"- **C / (A + B) = {ratio:.3f}** from the medians; per round (paired, drift cancels): median "
        f"{overhead:.3f}, IQR {q1:.3f}–{q3:.3f}. Goal ≤ 1.05: **{'met' if ratio <= 1.05 else 'missed'}**.",
    ]
    if "E" in times:
        per_round = [d / e for d, e in zip(times["D"], times["E"])]
        q1, paired, q3 = _quartiles(per_round)
        ratio = med["D"] / med["E"]
        lines.append(
            f"- **featdistill FitNets / torchdistill FitNets = {ratio:.3f}** from the medians; per round: median "
            f"{paired:.3f}, IQR {q1:.3f}–{q3:.3f}. Goal ≤ 1: **{'met' if ratio <= 1.0 else 'missed'}**."
        )
    if memory:
        a, c = memory["A"], memory["C"]
        lines += [
            f"- peak memory added by 2 steps (VmHWM − VmRSS before, separate processes): A {a['peak_added_mib']:.0f} MiB "
            f"(resident before: {a['rss_before_mib']:.0f} MiB), C {c['peak_added_mib']:.0f} MiB (resident before: "
            f"{c['rss_before_mib']:.0f} MiB, teacher weights included); C / A = "
            f"{c['peak_added_mib'] / a['peak_added_mib']:.2f}.",
        ]
    return [*lines, ""]


def main() -> None:
    """Run the alternating timings of every setting, the memory probes, and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["cifar", "imagenet"])
    parser.add_argument(
        "--rounds", type=int, default=20, help="timed rounds per setting (each runs A..E once)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is robust when other jobs share the CPU)"
    )
    parser.add_argument("--no-torchdistill", action="store_true", help="skip (E)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--memory-probe", nargs=2, metavar=("SETTING", "STEP"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "overhead.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.memory_probe:
        print(json.dumps(memory_probe(SETTINGS[args.memory_probe[0]], args.memory_probe[1])))
        return

    kinds = "ABCD" if args.no_torchdistill else "ABCDE"
    load_before, started = os.getloadavg(), time.perf_counter()
    sections = []
    for key in args.settings:
        s = SETTINGS[key]
        print(f"[{key}] timing {kinds} over {args.rounds} rounds ...", file=sys.stderr, flush=True)
        times = time_rounds(build_steps(s, kinds), args.rounds, args.warmup)
        memory = {}
        if not args.no_memory:
            print(f"[{key}] memory probes A, C ...", file=sys.stderr, flush=True)
            memory = {kind: _probe_in_child(key, kind, args.threads) for kind in "AC"}
        sections.append(report_setting(s, times, memory))
        print("\n".join(sections[-1]), file=sys.stderr, flush=True)
    elapsed, load_after = time.perf_counter() - started, os.getloadavg()
    flags = " ".join(
        [f"--settings {' '.join(args.settings)}", f"--rounds {args.rounds}", f"--warmup {args.warmup}"]
        + [f"--threads {args.threads}"]
        + (["--no-torchdistill"] if args.no_torchdistill else [])
        + (["--no-memory"] if args.no_memory else [])
    )
    header = [
        "# Distillation step overhead (CPU)",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs visible, torch threads = {args.threads}; "
        "no GPU in this session, so every figure is a CPU figure",
        f"- 1/5/15-min load average before: {', '.join(f'{v:.2f}' for v in load_before)}; after: "
        f"{', '.join(f'{v:.2f}' for v in load_after)} (a shared machine: above {os.cpu_count()} means other "
        "jobs were competing for the CPUs during the measurement)",
        f"- {_versions()}",
        f"- command: `python benchmarks/overhead.py {flags}` (total {elapsed / 60:.1f} min)",
        f"- synthetic input (random normal images, random labels), SGD lr {LR} momentum 0.9, fp32, eval-mode teacher, "
        "training-mode students; each round runs every step once in a rotated order; "
        f"{args.warmup} untimed warm-up rounds",
        "",
    ]
    report = "\n".join(header + [line for section in sections for line in section])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
