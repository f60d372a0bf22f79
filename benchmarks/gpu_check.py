"""GPU checks of the paths the CPU tests cannot reach: CUDA parity, AMP (fp16 with loss scaling, bf16),
channels_last and ``torch.compile`` through the trainer, and one distillation step of every task on CUDA.

Each check prints PASS or FAIL with its numbers; the exit status is the number of failures. A JSON summary
goes to ``--out``. Nothing is downloaded (random init, generated data):

    python benchmarks/gpu_check.py --out gpu_check.json
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from featdistill import Distiller
from featdistill.config import parse_config
from featdistill.run import build_trainer
from featdistill.tasks.classification.models import build_classifier

CHECKS: list[tuple[str, Callable[[], dict]]] = []
DEVICE = "cuda"  # --device cpu: a dry run of the script itself (fp16 checks then fail by design)


def check(fn: Callable[[], dict]) -> Callable[[], dict]:
    CHECKS.append((fn.__name__, fn))
    return fn


def _cifar_distiller(device: str) -> Distiller:
    torch.manual_seed(0)
    student, teacher = build_classifier("resnet8", 10), build_classifier("resnet20", 10)
    x = torch.randn(2, 3, 32, 32)
    distiller = Distiller(
        student, teacher, pairs=[("layer3", "layer3")], method="cwt", alpha=1e-2, sample_input=x
    )
    return distiller.to(device)


@check
def cuda_matches_cpu() -> dict:
    """The same weights and batch give the same task and distillation loss on CPU and CUDA (fp32)."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    values = {}
    for device in ("cpu", DEVICE):
        distiller = _cifar_distiller(device).eval()
        with torch.no_grad():
            out = distiller(x.to(device))
        values[device] = (out.student.float().cpu(), out.loss.item())
    logit_diff = (values["cpu"][0] - values[DEVICE][0]).abs().max().item()
    rel = abs(values["cpu"][1] - values[DEVICE][1]) / abs(values["cpu"][1])
    assert logit_diff < 1e-3 and rel < 1e-4, (logit_diff, rel)
    return {"max_logit_diff": logit_diff, "loss_rel_diff": rel}


def _train(amp: str, channels_last: bool = False, compile: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as out:
        tree = {
            "task": "classification",
            "device": DEVICE,
            "data": {
                "name": "synthetic",
                "root": "(generated)",
                "limit": 4000,
                "val_limit": 1000,
                "batch_size": 64,
            },
            "model": {"student": "resnet8", "teacher": "resnet20", "num_classes": 10},
            "distill": {"method": "cwt", "alpha": 1e-3},
            "train": {
                "epochs": 3,
                "lr": 0.05,
                "amp": amp,
                "channels_last": channels_last,
                "compile": compile,
            },
            "output": {"dir": out, "tensorboard": False, "progress": False},
        }
        trainer = build_trainer(parse_config(tree))
        start = time.perf_counter()
        metrics = trainer.fit()
        seconds = time.perf_counter() - start
        scaler = trainer.scaler.is_enabled()
    assert metrics["top1"] > 40.0, metrics  # 10 classes: chance is 10 %; the demo reaches ~75 % on CPU
    assert scaler == (amp == "fp16"), scaler
    return {"top1": metrics["top1"], "seconds": round(seconds, 1), "grad_scaler": scaler}


@check
def train_fp32() -> dict:
    return _train("none")


@check
def train_bf16_channels_last() -> dict:
    return _train("bf16", channels_last=True)


@check
def train_fp16_grad_scaler() -> dict:
    return _train("fp16")


@check
def train_compiled() -> dict:
    return _train("none", compile=True)


def _step_under(
    amp: torch.dtype, distiller: Distiller, inputs: tuple, task_of: Callable[..., torch.Tensor]
) -> dict:
    """One optimiser step of ``task + distill`` under autocast; gradients must reach the transforms."""
    params = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    scaler = torch.amp.GradScaler(DEVICE, enabled=amp == torch.float16 and DEVICE == "cuda")
    distiller.train()
    with torch.autocast(DEVICE, dtype=amp):
        out = distiller(*inputs)
        task, loss = task_of(out.student), out.loss
    assert torch.isfinite(task) and torch.isfinite(loss) and loss > 0, (task, loss)
    scaler.scale(task + loss).backward()
    for transform in distiller.transforms:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in transform.parameters())
    scaler.step(optimizer)
    scaler.update()
    return {"task": round(task.item(), 4), "distill": round(loss.item(), 4)}


def _detection_task(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(losses.values())


def _segmentation_task(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """PSPNet-style loss: main head plus 0.4 x the auxiliary head."""
    return F.cross_entropy(logits["out"].float(), labels) + 0.4 * F.cross_entropy(
        logits["aux"].float(), labels
    )


@check
def detection_steps() -> dict:
    """Faster R-CNN, Mask R-CNN, RetinaNet and FCOS: CWT on P2-P5 (or P3-P7), fp16 and bf16."""
    from featdistill.tasks.detection.models import build_detector, fpn_level_names, match_transform
    from featdistill.tasks.detection.task import teacher_forward

    results = {}
    for name in ("fasterrcnn", "maskrcnn", "retinanet", "fcos"):
        for amp in (torch.float16, torch.bfloat16):
            torch.manual_seed(0)
            student = build_detector(name, 3, backbone="resnet18", min_size=256, max_size=320).to(DEVICE)
            teacher = build_detector(name, 3, backbone="resnet50", min_size=256, max_size=320).to(DEVICE)
            match_transform(teacher, student)
            images = [torch.rand(3, 240, 320, device=DEVICE) for _ in range(2)]
            targets = []
            for i in range(2):
                target = {
                    "boxes": torch.tensor([[20.0 + 10 * i, 30, 200, 220]], device=DEVICE),
                    "labels": torch.tensor([1 + i], device=DEVICE),
                }
                if name == "maskrcnn":
                    masks = torch.zeros(1, 240, 320, dtype=torch.uint8, device=DEVICE)
                    masks[0, 30:220, 20 + 10 * i : 200] = 1
                    target["masks"] = masks
                targets.append(target)
            levels = fpn_level_names(student)
            distiller = Distiller(
                student,
                teacher,
                pairs=[(f"backbone[{k}]", f"backbone[{k}]") for k in levels],
                method="cwt",
                alpha=5e-7,
                sample_input=(images,),
                teacher_forward=teacher_forward,
            )

            key = f"{name}_{str(amp).split('.')[-1]}"
            results[key] = _step_under(amp, distiller, (images, targets), _detection_task)
    return results


@check
def segmentation_steps() -> dict:
    """PSPNet R18 <- R50 and DeepLabV3 R18 <- R50: CWT on layer4, fp16 and bf16."""
    from featdistill.tasks.segmentation import build_segmenter

    results = {}
    for arch in ("pspnet", "deeplabv3"):
        for amp in (torch.float16, torch.bfloat16):
            torch.manual_seed(0)
            student = build_segmenter(arch, 11, backbone="resnet18").to(DEVICE)
            teacher = build_segmenter(arch, 11, backbone="resnet50").to(DEVICE)
            x = torch.randn(2, 3, 256, 256, device=DEVICE)
            y = torch.randint(0, 11, (2, 256, 256), device=DEVICE)
            distiller = Distiller(
                student,
                teacher,
                pairs=[("backbone.layer4", "backbone.layer4")],
                method="cwt",
                alpha=2e-5,
                sample_input=x,
            )

            key = f"{arch}_{str(amp).split('.')[-1]}"
            results[key] = _step_under(amp, distiller, (x,), functools.partial(_segmentation_task, labels=y))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    summary = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
        "checks": {},
    }
    for name, fn in CHECKS:
        start = time.perf_counter()
        try:
            result = {"status": "PASS", **fn()}
        except Exception as err:  # report every check, not only the first failure
            result = {
                "status": "FAIL",
                "error": f"{type(err).__name__}: {err}",
                "trace": traceback.format_exc(),
            }
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary["checks"][name] = result
        print(
            f"{result['status']} {name}: {json.dumps({k: v for k, v in result.items() if k != 'trace'})}",
            flush=True,
        )
    args.out.write_text(json.dumps(summary, indent=2))
    raise SystemExit(sum(r["status"] == "FAIL" for r in summary["checks"].values()))


if __name__ == "__main__":
    main()
