"""GPU checks of the paths the CPU tests cannot reach: CUDA parity, AMP (fp16 with loss scaling, bf16),
channels_last and ``torch.compile`` through the trainer, and one distillation step of every task on CUDA.

Skipped without CUDA; on a GPU machine: ``pytest -m gpu -v``. Nothing is downloaded (random init, generated
data). The task losses are the task plug-ins' own (``loss_terms``), not re-implementations.
"""

from __future__ import annotations

import os

import pytest
import torch

from featdistill import Distiller
from featdistill.config import parse_config
from featdistill.run import build_trainer, get_task
from featdistill.tasks.classification.models import build_classifier

# FEATDISTILL_GPU_DEVICE=cpu runs the bf16/fp32 checks on CPU: a dry run of this file on a machine without a GPU.
DEVICE = os.environ.get("FEATDISTILL_GPU_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
AMP = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _cifar_distiller(device: str) -> Distiller:
    torch.manual_seed(0)
    student, teacher = build_classifier("resnet8", 10), build_classifier("resnet20", 10)
    x = torch.randn(2, 3, 32, 32)
    distiller = Distiller(
        student, teacher, pairs=[("layer3", "layer3")], method="cwt", alpha=1e-2, sample_input=x
    )
    return distiller.to(device)


def test_cuda_matches_cpu() -> None:
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


@pytest.mark.parametrize(
    ("amp", "channels_last", "compile"),
    [("none", False, False), ("bf16", True, False), ("fp16", False, False), ("none", False, True)],
    ids=["fp32", "bf16_channels_last", "fp16_grad_scaler", "compiled"],
)
def test_training_through_the_trainer(tmp_path, amp: str, channels_last: bool, compile: bool) -> None:
    """Three epochs of resnet20 -> resnet8 CWT on generated data learn well above chance in every mode."""
    if amp == "fp16" and DEVICE != "cuda":
        pytest.skip("fp16 loss scaling is a CUDA path")
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
        "output": {"dir": str(tmp_path), "tensorboard": False, "progress": False},
    }
    trainer = build_trainer(parse_config(tree))
    metrics = trainer.fit()
    assert metrics["top1"] > 40.0, metrics  # 10 classes: chance is 10 %; the demo reaches ~75 % on CPU
    assert trainer.scaler.is_enabled() == (amp == "fp16" and DEVICE == "cuda")


def _step_under(amp: torch.dtype, distiller: Distiller, task, inputs: tuple, batch) -> None:
    """One optimiser step of the task's loss + the distillation loss under autocast.

    The term must be finite and positive, and gradients must reach every transform.
    """
    if amp == torch.float16 and DEVICE != "cuda":
        pytest.skip("fp16 autocast steps are a CUDA path")
    params = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    scaler = torch.amp.GradScaler(DEVICE, enabled=amp == torch.float16 and DEVICE == "cuda")
    distiller.train()
    with torch.autocast(DEVICE, dtype=amp):
        out = distiller(*inputs)
        task_loss = torch.stack([t.float() for t in task.loss_terms(out.student, batch).values()]).sum()
    assert torch.isfinite(task_loss) and torch.isfinite(out.loss) and out.loss > 0, (task_loss, out.loss)
    scaler.scale(task_loss + out.loss).backward()
    for transform in distiller.transforms:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in transform.parameters())
    scaler.step(optimizer)
    scaler.update()


@pytest.mark.parametrize("amp", list(AMP))
@pytest.mark.parametrize("family", ["fasterrcnn", "maskrcnn", "retinanet", "fcos"])
def test_detection_step(family: str, amp: str) -> None:
    """Faster R-CNN, Mask R-CNN, RetinaNet and FCOS: CWT on every FPN level, under fp16 and bf16."""
    from featdistill.tasks.detection.models import build_detector, fpn_level_names, match_transform
    from featdistill.tasks.detection.task import teacher_forward

    torch.manual_seed(0)
    student = build_detector(family, 3, backbone="resnet18", min_size=256, max_size=320).to(DEVICE)
    teacher = build_detector(family, 3, backbone="resnet50", min_size=256, max_size=320).to(DEVICE)
    match_transform(teacher, student)
    images = [torch.rand(3, 240, 320, device=DEVICE) for _ in range(2)]
    targets = []
    for i in range(2):
        target = {
            "boxes": torch.tensor([[20.0 + 10 * i, 30, 200, 220]], device=DEVICE),
            "labels": torch.tensor([1 + i], device=DEVICE),
        }
        if family == "maskrcnn":
            masks = torch.zeros(1, 240, 320, dtype=torch.uint8, device=DEVICE)
            masks[0, 30:220, 20 + 10 * i : 200] = 1
            target["masks"] = masks
        targets.append(target)
    distiller = Distiller(
        student,
        teacher,
        pairs=[(f"backbone[{k}]", f"backbone[{k}]") for k in fpn_level_names(student)],
        method="cwt",
        alpha=5e-7,
        sample_input=(images,),
        teacher_forward=teacher_forward,
    )
    cfg = parse_config(
        {"task": "detection", "data": {"name": "coco", "root": "(unused)"}, "model": {"student": family}}
    )
    _step_under(AMP[amp], distiller, get_task(cfg), (images, targets), (images, targets))


@pytest.mark.parametrize("amp", list(AMP))
@pytest.mark.parametrize("arch", ["pspnet", "deeplabv3"])
def test_segmentation_step(arch: str, amp: str) -> None:
    """PSPNet and DeepLabV3, R18 <- R50: CWT on layer4 with the task's main + auxiliary loss, fp16 and bf16."""
    from featdistill.tasks.segmentation import build_segmenter

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
    cfg = parse_config(
        {
            "task": "segmentation",
            "data": {"name": "camvid", "root": "(unused)"},
            "model": {"student": arch, "num_classes": 11},
        }
    )
    _step_under(AMP[amp], distiller, get_task(cfg), (x,), (x, y))
