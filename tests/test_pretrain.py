"""task: pretrain — foundation teachers (a random-init hf: Dinov2 with registers, a tiny timm ViT) distilled into a
ResNet-18 without labels, probed (kNN / linear) and fine-tuned as a classifier and a segmentation backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from featdistill.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 64
TIMM_VIT = "timm:vit_small_patch14_dinov2.lvd142m"
TIMM_OPTIONS = {"img_size": SIDE, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def _image(kind: int, seed: int) -> Image.Image:
    """Stripes of one orientation per kind, in random colours with noise."""
    generator = torch.Generator().manual_seed(seed)
    ramp = (torch.arange(SIDE) // 8 % 2).float()
    stripes = ramp.view(SIDE, 1).expand(SIDE, SIDE) if kind == 0 else ramp.view(1, SIDE).expand(SIDE, SIDE)
    colour = torch.rand(3, 1, 1, generator=generator) * 200
    pixels = stripes * colour + torch.rand(3, SIDE, SIDE, generator=generator) * 55
    return Image.fromarray(pixels.clamp(0, 255).byte().permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One pretrain run (both teachers at once, kNN probe every epoch) that the tests below share."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    root = tmp_path_factory.mktemp("pretrain")
    images = root / "unlabeled"
    images.mkdir()
    for k in range(12):
        _image(k % 2, k).save(images / f"{k:02d}.png")
    for split, count in (("train", 6), ("test", 4)):
        for kind in (0, 1):
            (root / "probe" / split / f"c{kind}").mkdir(parents=True)
            for k in range(count):
                _image(kind, 100 + 10 * kind + k + (50 if split == "test" else 0)).save(
                    root / "probe" / split / f"c{kind}" / f"{k}.png"
                )
    torch.manual_seed(0)
    config = Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=8,
        image_size=SIDE,
        num_register_tokens=4,
    )
    Dinov2WithRegistersModel(config).save_pretrained(root / "dinov2")
    run = {
        "task": "pretrain",
        "device": "cpu",
        "data": {"name": "images", "root": str(images), "batch_size": 4, "probe": str(root / "probe")},
        "model": {
            "student": "resnet18",
            "teachers": {
                "dino": {"model": f"hf:{root / 'dinov2'}"},
                "vit": {"model": TIMM_VIT, "options": TIMM_OPTIONS},
            },
        },
        "distill": {"alpha": "auto"},
        "train": {"epochs": 2, "lr": 0.01, "log_every": 1},
        "output": {"dir": str(root / "run"), "tensorboard": False, "progress": False},
    }
    (root / "pretrain.yaml").write_text(yaml.safe_dump(run))
    return {"root": root, "config": root / "pretrain.yaml", "run": root / "run", "probe": root / "probe"}


def test_two_foundation_teachers_distil_into_a_resnet_without_labels(pretrained, capsys) -> None:
    with pytest.warns(UserWarning, match="teacher is untrained"):  # the timm ViT: random init, no weights
        assert main(["train", str(pretrained["config"])]) == 0
    said = capsys.readouterr().out
    assert "no task loss: starts at 1" in said  # alpha auto: an equal start for every term
    state = torch.load(pretrained["run"] / "last.pt", weights_only=True)
    card = state["card"]
    # one CWT per teacher, on the ViTs' patch grids (8x8 of 64 px at patch 8, CLS and 4 registers dropped)
    assert card["distillation"]["pairs"] == [
        ["layer4", "dino:hf.encoder.layer.1", "cwt"],
        ["layer4", "vit:blocks.1", "cwt"],
    ]
    assert set(state["balancer"]["alpha"]) == {"dino:cwt", "vit:cwt"}
    assert state["transforms"]["0.layers.0.weight"].shape[:2] == (32, 512)  # CWT: 512 student -> 32 teacher
    assert not any(key.startswith("fc.") for key in state["student"])  # a backbone: no classifier head
    metrics = json.loads((pretrained["run"] / "metrics.json").read_text())
    assert 0 <= metrics["knn_top1"] <= 100 and card["metric"]["name"] == "knn_top1"
    rows = (pretrained["run"] / "log.csv").read_text()
    assert "val/knn_top1" in rows and "train/cwt:layer4->dino:hf.encoder.layer.1" in rows
