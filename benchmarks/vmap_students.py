"""K students of one architecture trained as ONE vectorised model (``torch.func`` + ``vmap``) vs in lockstep.

Issue 11, point 5. Both ways share one teacher forward per step; they differ in how the K students step:

  lockstep (what ``featdistill sweep`` does now): K separate ``Distiller`` steps (forward, backward, SGD);
  vmap: the K students' parameters stacked (``torch.func.stack_module_state``-style), one ``vmap`` over
        ``functional_call(Distiller, ...)`` (the product's own forward: taps, CWT transform, loss), the K
        losses summed, one backward, one SGD step over the stacked parameters (SGD is elementwise, so this
        equals K optimizers with the same lr). Each student keeps its own α and its own BatchNorm buffers.

Setting: the CIFAR-10 CPU tier's models (resnet20 teacher -> resnet8 students, CWT on layer3), batch 64 at
32x32, random data (throughput only). The K losses of both ways are compared at the first step and again
after all timed steps (the same students, optimizers and BatchNorm statistics give the same losses).
Reports students' images per second (K x batch / step time), median of the timed rounds.

    python benchmarks/vmap_students.py --device cpu > benchmarks/results/vmap_students.md
    python benchmarks/vmap_students.py --device cuda >> ...   (when a GPU is lent)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

import featdistill as fd
from featdistill.tasks.classification.models import build_classifier
from machine import cpu_name


def _distillers(k: int, teacher: torch.nn.Module, sample: torch.Tensor, device: torch.device) -> list:
    students = [build_classifier("resnet8", 10) for _ in range(k)]
    made = [
        fd.Distiller(s, teacher, pairs=[("layer3", "layer3")], method="cwt", alpha=1e-3, sample_input=sample)
        for s in students
    ]
    return [d.to(device).train() for d in made]


def _trainable(d: fd.Distiller) -> dict[str, torch.Tensor]:
    return {f"student.{k}": v for k, v in d.student.named_parameters()} | {
        f"transforms.{k}": v for k, v in d.transforms.named_parameters()
    }


def _buffers(d: fd.Distiller) -> dict[str, torch.Tensor]:
    return {f"student.{k}": v for k, v in d.student.named_buffers()}


def lockstep_step(distillers: list, alphas: list[float]) -> Callable:
    """One teacher forward, then each student's own forward, backward and SGD step."""
    optimizers = [
        torch.optim.SGD(d.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) for d in distillers
    ]

    def step(x: torch.Tensor, y: torch.Tensor) -> list[float]:
        features = distillers[0].teacher_features(x)
        losses = []
        for d, alpha, optimizer in zip(distillers, alphas, optimizers):
            out = d(x, teacher_features=features)
            loss = F.cross_entropy(out.student, y) + out.loss / 1e-3 * alpha
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        return [float(v) for v in losses]

    return step


def vmap_step(distillers: list, alphas: list[float]) -> Callable:
    """One teacher forward, then one vectorised forward/backward/SGD step of all K students."""
    base = distillers[0]
    params = {
        k: torch.stack([_trainable(d)[k].detach() for d in distillers]).requires_grad_()
        for k in _trainable(base)
    }
    buffers = {k: torch.stack([_buffers(d)[k] for d in distillers]) for k in _buffers(base)}
    weights = torch.tensor(alphas, device=next(iter(params.values())).device) / 1e-3
    optimizer = torch.optim.SGD(params.values(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def one(
        p: dict, b: dict, weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor, features: dict
    ) -> torch.Tensor:
        out = functional_call(base, {**p, **b}, (x,), {"teacher_features": features})
        return F.cross_entropy(out.student, y) + out.loss * weight

    batched = vmap(one, in_dims=(0, 0, 0, None, None, None))

    def step(x: torch.Tensor, y: torch.Tensor) -> list[float]:
        features = base.teacher_features(x)
        losses = batched(params, buffers, weights, x, y, features)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        return losses.detach().tolist()

    return step


def _relative_gap(a: list[float], b: list[float]) -> float:
    """The largest difference of two lists of losses, relative to the loss."""
    return max(abs(x - y) / max(abs(x), abs(y), 1e-12) for x, y in zip(a, b))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(k: int, device: torch.device, rounds: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    teacher = build_classifier("resnet20", 10).to(device).eval()
    alphas = torch.logspace(-3.5, -2, k).tolist() if k > 1 else [1e-3]  # each its own α, a sweep's range
    state = {}
    for name, make in (("lockstep", lockstep_step), ("vmap", vmap_step)):
        torch.manual_seed(1)
        state[name] = make(_distillers(k, teacher, x[:2].cpu(), device), alphas)
    first = {name: step(x, y) for name, step in state.items()}  # same initial students: same losses
    gap = _relative_gap(first["lockstep"], first["vmap"])
    times: dict[str, list[float]] = {name: [] for name in state}
    for _ in range(2):  # warm-up
        for step in state.values():
            step(x, y)
    for r in range(rounds):
        for name in list(state)[:: 1 if r % 2 == 0 else -1]:  # alternate the order against drift
            _sync(device)
            start = time.perf_counter()
            state[name](x, y)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    last = {name: step(x, y) for name, step in state.items()}  # after as many steps: still the same students
    drift = _relative_gap(last["lockstep"], last["vmap"])
    print(f"K={k}: last-step losses lockstep {last['lockstep']}, vmap {last['vmap']}", file=sys.stderr)
    result = {f"{name}_s": statistics.median(t) for name, t in times.items()}
    return {**result, "gap": gap, "drift": drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ks", default="1,4,8", help="numbers of students")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"## {device.type.upper()}: {name}\n")
    print(
        f"- {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}; batch {args.batch}, 32x32; median of "
        f"{args.rounds} alternating rounds after 2 warm-up steps; seeds 0 (data) and 1 (students)\n"
    )
    print(
        "| K | lockstep s/step | vmap s/step | lockstep img/s | vmap img/s | vmap speed-up | relative loss gap: first, last step |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in (int(v) for v in args.ks.split(",")):
        r = measure(k, device, args.rounds, args.batch)
        images = k * args.batch
        print(
            f"| {k} | {r['lockstep_s']:.4f} | {r['vmap_s']:.4f} | {images / r['lockstep_s']:.0f} "
            f"| {images / r['vmap_s']:.0f} | {r['lockstep_s'] / r['vmap_s']:.2f}x | {r['gap']:.1e}, {r['drift']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
