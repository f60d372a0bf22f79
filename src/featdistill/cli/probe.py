"""``featdistill probe``: kNN and linear-probe top-1 of a backbone's pooled features on a labeled ImageFolder.

MODEL is a featdistill checkpoint (a pretrain run's, a classification teacher's, any run's ``last.pt``: its
student, normalised as its card says) or a model spec (``--model``, or any MODEL that is not a file): a
classifier name (torchvision, featdistill, random init unless ``--weights``), ``timm:<name>`` or
``hf:<repo or folder>`` (a vision backbone, normalised and sized as its hub config says). Its classifier head
is removed, so by default the probe reads the pooled features the head would have read; ``--layer`` reads
another layer (a tap address, as in pairs). The last line printed is JSON: ``knn_top1``, ``linear_top1``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .arguments import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    about = (
        "Score a backbone's features by kNN and linear-probe top-1 on a labeled ImageFolder (train and test)."
    )
    probe = add_command(
        sub, "probe", about, "runs/pretrain/last.pt data/probe  |  --model resnet18 data/probe"
    )
    probe.add_argument(
        "model", metavar="MODEL", help="a featdistill checkpoint, or a model spec (see --model)"
    )
    probe.add_argument("root", metavar="ROOT", help="ImageFolder root with the two splits")
    probe.add_argument(
        "--model",
        dest="spec",
        action="store_true",
        help="read MODEL as a model name (resnet18, timm:<name>, hf:<repo or folder>) even if a file has that name",
    )
    probe.add_argument("--weights", help="with a model name: its weights (a file, torchvision, timm)")
    probe.add_argument(
        "--layer", default=None, help="tap address of the layer to pool (default: the head's input)"
    )
    probe.add_argument("--train-split", default="train", help="the split the neighbours and the probe fit on")
    probe.add_argument("--val-split", default="test", help="the split scored")
    probe.add_argument(
        "--image-size", type=int, default=None, help="resize images to this side (default: the model's)"
    )
    probe.add_argument("--batch-size", type=int, default=64, help="images per forward")
    probe.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    probe.add_argument(
        "--seed", type=int, default=0, help="seed of a model built without weights (random init)"
    )


def _from_checkpoint(path: str) -> tuple[Any, str, dict[str, Any]]:
    """``(backbone, default layer, preprocessing)`` of a featdistill checkpoint's student."""
    from ..predict.student import load_student
    from ..tasks.pretrain.models import drop_head

    task, student, card = load_student(path)
    layer = task.evaluation_layer() if hasattr(task, "evaluation_layer") else ""
    p = card["preprocessing"]
    size = tuple(p["input_size"]) if p.get("input_size") else None
    return drop_head(student), layer, {"mean": p.get("mean"), "std": p.get("std"), "size": size}


def _from_spec(spec: str, weights: str | None) -> tuple[Any, str, dict[str, Any]]:
    """``(backbone, "", preprocessing)`` of a model name: a foundation backbone brings its own normalisation."""
    from ..tasks.pretrain.models import build_backbone_student, build_foundation_teacher

    if spec.startswith(("hf:", "timm:")):
        model = build_foundation_teacher(spec, weights, 10)
        wanted = model.teacher_input
        return model, "", {"mean": wanted.mean, "std": wanted.std, "size": wanted.size, "patch": wanted.patch}
    return build_backbone_student(spec, weights, 10), "", {"mean": None, "std": None, "size": None}


def run(args: argparse.Namespace) -> None:
    """Print the probe's scores as one JSON line."""
    import torch

    from ..run import select_device
    from ..tasks.pretrain.probe import probe_data, probe_scores

    torch.manual_seed(args.seed)  # a random init is reproducible
    is_file = Path(args.model).is_file() and not args.spec
    model, layer, p = _from_checkpoint(args.model) if is_file else _from_spec(args.model, args.weights)
    size = (args.image_size, args.image_size) if args.image_size else p["size"]
    if size is not None and p.get("patch"):  # a ViT: whole patches
        size = tuple(max(1, round(side / p["patch"])) * p["patch"] for side in size)
    layer = args.layer if args.layer is not None else layer
    device = select_device(args.device)
    data = probe_data(args.root, size, p["mean"], p["std"], args.batch_size, args.train_split, args.val_split)
    scores = probe_scores(model.to(device), layer, data, device, progress=True)
    print(
        json.dumps(
            {
                **scores,
                "layer": layer or "output",
                "train_images": len(data.train.images),
                "test_images": len(data.test.images),
            }
        )
    )
