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
        "train": {"epochs": 1, "lr": 0.01, "log_every": 1},
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


def _probed(capsys: pytest.CaptureFixture, *argv: str) -> dict[str, float]:
    assert main(["probe", *argv]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the last line is the JSON
    assert 0 <= scores["knn_top1"] <= 100 and 0 <= scores["linear_top1"] <= 100
    return scores


def test_probe_scores_a_pretrain_checkpoint_a_bare_model_and_a_teacher_checkpoint(
    pretrained, tmp_path: Path, capsys
) -> None:
    probe = str(pretrained["probe"])
    last = pretrained["run"] / "last.pt"
    if not last.is_file():
        pytest.skip("needs the pretrain run of the first test")
    distilled = _probed(capsys, str(last), probe)
    assert distilled["train_images"] == 12 and distilled["test_images"] == 8
    bare = _probed(capsys, "resnet8", probe, "--model")  # a registry name, random init
    assert bare["layer"] == "output"
    foundation = _probed(capsys, f"hf:{pretrained['root'] / 'dinov2'}", probe)  # the teacher itself
    assert foundation["layer"] == "output"
    teacher_run = {  # a labeled classification run on the probe's images: its checkpoint is a teacher's
        "task": "classification",
        "device": "cpu",
        "data": {"name": "imagefolder", "root": probe, "batch_size": 4},
        "model": {"student": "resnet8", "num_classes": 2},
        "train": {"max_steps": 2, "lr": 0.01},
        "output": {"dir": str(tmp_path / "teacher"), "tensorboard": False, "progress": False},
    }
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(teacher_run))
    assert main(["train", str(tmp_path / "teacher.yaml")]) == 0
    capsys.readouterr()
    teacher = _probed(capsys, str(tmp_path / "teacher" / "last.pt"), probe, "--layer", "layer3")
    assert teacher["layer"] == "layer3"


def test_a_pretrain_checkpoint_fine_tunes_as_classifier_and_as_segmentation_backbone(
    pretrained, tmp_path: Path, capsys
) -> None:
    from featdistill.tasks.segmentation.models import build_segmenter

    last = pretrained["run"] / "last.pt"
    if not last.is_file():
        pytest.skip("needs the pretrain run of the first test")
    student = torch.load(last, weights_only=True)["student"]
    run = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": "imagefolder", "root": str(pretrained["probe"]), "batch_size": 4},
        "model": {"student": "resnet18", "num_classes": 2, "student_weights": str(last)},
        "train": {"max_steps": 1, "lr": 0.0},
        "output": {"dir": str(tmp_path / "fine"), "tensorboard": False, "progress": False},
    }
    (tmp_path / "fine.yaml").write_text(yaml.safe_dump(run))
    with pytest.warns(
        UserWarning, match=r"has no classifier head .*fc\.bias, fc\.weight start from a random"
    ):
        assert main(["train", str(tmp_path / "fine.yaml")]) == 0
    tuned = torch.load(tmp_path / "fine" / "last.pt", weights_only=True)["student"]
    assert torch.equal(tuned["layer4.1.conv2.weight"], student["layer4.1.conv2.weight"])  # lr 0: as loaded
    segmenter = build_segmenter("pspnet", 3, backbone="resnet18", pretrained_backbone=str(last))
    assert torch.equal(segmenter.backbone.layer4[1].conv2.weight, student["layer4.1.conv2.weight"])


def _write(tmp_path: Path, name: str, tree: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_bad_input_is_one_line(pretrained, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no image here")
    base = yaml.safe_load(pretrained["config"].read_text())
    cases = {
        "no_images": ({"data": {**base["data"], "root": str(empty)}}, "no images in"),
        "labels": (
            {"data": {**base["data"], "name": "imagefolder"}},
            "task: pretrain reads unlabeled images",
        ),
        "vector": (  # the pooled output of a CNN teacher: neither a map nor tokens
            {
                "model": {"student": "resnet18", "teacher": "resnet8", "teacher_weights": None},
                "distill": {"pairs": [["layer4", "fc@input"]]},
            },
            "neither a feature map (B, C, H, W) nor a token grid",
        ),
        "grid_given": (
            {
                "model": {
                    "student": "resnet18",
                    "teacher": f"timm:{TIMM_VIT[5:]}",
                    "options": {"teacher": {**TIMM_OPTIONS, "img_size": [64, 48]}},
                },
                "distill": {"pairs": [["layer4", "blocks.1[grid]"]]},
            },
            "not a square grid; give the grid in the address",
        ),
    }
    for name, (change, expected) in cases.items():
        tree = {**base, **change, "output": {**base["output"], "dir": str(tmp_path / name)}}
        assert main(["train", _write(tmp_path, name, tree)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, (name, err)


# -- the pieces, on tensors -------------------------------------------------------------------------------
def test_tokens_become_the_patch_grid_after_the_prefix_tokens() -> None:
    from featdistill.taps import select, tokens_to_grid

    tokens = torch.arange(2 * (5 + 6) * 3, dtype=torch.float32).view(
        2, 11, 3
    )  # CLS + 4 registers + 2x3 patches
    grid = select(tokens, ["grid=2x3"], "blocks.1[grid=2x3]", prefix_tokens=5)
    assert grid.shape == (2, 3, 2, 3)
    assert torch.equal(grid[1, :, 1, 2], tokens[1, 10])  # the last patch, row 1 column 2
    assert tokens_to_grid(tokens[:, 2:], 0).shape == (2, 3, 3, 3)  # 9 tokens: a square
    with pytest.raises(ValueError, match=r"6 after its 5 prefix .*not a square grid"):
        tokens_to_grid(tokens, 5)


def test_cosine_is_one_minus_the_cosine_per_position() -> None:
    import torch.nn.functional as F

    import featdistill as fd

    torch.manual_seed(0)
    student, teacher = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 6, 1)
    x = torch.randn(2, 3, 5, 5)
    d = fd.Distiller(student, teacher, pairs=[("", "")], method="cosine", alpha=1.0, sample_input=x)
    out = d(x)
    aligned = d.transforms[0](student(x), (5, 5))
    expected = (1 - F.cosine_similarity(aligned, teacher(x), dim=1)).mean()
    torch.testing.assert_close(out.loss, expected)
    assert 0 <= float(out.loss.detach()) <= 2


def test_alpha_auto_without_a_task_loss_starts_every_term_at_one() -> None:
    import featdistill as fd

    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 1))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 8, 1))
    pairs = [("0", "0", "cwt"), ("1", "1", "cosine")]
    d = fd.Distiller(student, teacher, pairs=pairs, alpha="auto", sample_input=torch.randn(2, 3, 4, 4))
    chosen = d.balancer.calibrate({"task": 0.0, "cwt": 400.0, "cosine": 0.5})
    assert chosen == pytest.approx({"cwt": 1 / 400, "cosine": 2.0})


def test_the_teacher_gets_its_own_normalisation_and_size(tmp_path: Path) -> None:
    from featdistill.config import parse_config
    from featdistill.tasks.pretrain.task import PretrainTask
    from featdistill.weights.foundation import TeacherInput

    cfg = parse_config(
        {
            "task": "pretrain",
            "data": {
                "name": "images",
                "root": str(tmp_path),
                "options": {"mean": [0.5] * 3, "std": [0.25] * 3},
            },
            "model": {"student": "resnet8", "teacher": "resnet8"},
        }
    )
    seen = []

    class Teacher(torch.nn.Module):
        teacher_input = TeacherInput((0.25,) * 3, (0.5,) * 3, (30, 30), patch=14)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            seen.append(images)
            return images

    pixels = torch.full((1, 3, 20, 20), 0.75)  # the student's view, in 0..1
    PretrainTask(cfg).teacher_forward(Teacher(), (pixels - 0.5) / 0.25)
    assert seen[0].shape == (1, 3, 28, 28)  # 30 rounded to whole 14-pixel patches
    torch.testing.assert_close(seen[0], torch.full_like(seen[0], (0.75 - 0.25) / 0.5))


def test_images_reads_photos_at_any_depth_and_leaves_labels_out(tmp_path: Path) -> None:
    from featdistill.tasks.classification.data import load_tensors, scan_images

    for folder in ("coco/images", "coco/annotations", "camvid/train", "camvid/trainannot", "flat/a/b"):
        (tmp_path / folder).mkdir(parents=True)
    for k, folder in enumerate(("coco/images", "camvid/train", "camvid/trainannot", "flat/a/b")):
        _image(k % 2, k).save(tmp_path / folder / f"{k}.png")
    (tmp_path / "coco/annotations/instances.json").write_text("{}")
    (tmp_path / "flat/.DS_Store").write_text("")
    folders, files = scan_images(tmp_path)
    assert folders == ["camvid/train", "coco/images", "flat/a/b"]  # groups for data.limit, not labels
    assert [f.relative_to(tmp_path).as_posix() for group in files for f in group] == [
        "camvid/train/1.png",
        "coco/images/0.png",
        "flat/a/b/3.png",
    ]
    images, _, _ = load_tensors("images", tmp_path, "train", limit=2)  # one image of each of 2 folders
    assert images.shape == (2, 3, SIDE, SIDE)


def test_views_are_seeded_switchable_and_keep_the_dtype() -> None:
    from featdistill.tasks.pretrain.augment import Views

    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    views = Views()
    first = views(batch, torch.Generator().manual_seed(3))
    assert first.dtype == torch.uint8 and first.shape == batch.shape
    assert torch.equal(first, views(batch, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, batch)
    off = Views(resized_crop=False, flip=False, color_jitter=0.0)
    assert torch.equal(off(batch, torch.Generator().manual_seed(3)), batch)


def _tiny(transformers, kind: str):
    """A tiny random model of each backbone family (config kwargs kept to a few channels)."""
    vit = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    if kind == "clip":
        vision = {**vit, "image_size": 32, "patch_size": 8}
        text = {**vit, "vocab_size": 50, "max_position_embeddings": 8}
        return transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision))
    if kind == "siglip":
        vision = {**vit, "image_size": 32, "patch_size": 8}
        text = {**vit, "vocab_size": 50, "max_position_embeddings": 8}
        return transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
    if kind == "vit":
        return transformers.ViTModel(transformers.ViTConfig(**vit, image_size=32, patch_size=8))
    return transformers.ConvNextModel(
        transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    )


@pytest.mark.parametrize(("kind", "prefix", "shape"), [
    ("clip", 1, (1, 17, 16)), ("siglip", 0, (1, 16, 16)), ("vit", 1, (1, 17, 16)), ("convnext", 1, (1, 16, 4, 4)),
])  # fmt: skip
def test_hf_backbones_that_are_not_classifiers(kind: str, prefix: int, shape: tuple, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from featdistill.weights.foundation import build_hf_backbone

    _tiny(transformers, kind).save_pretrained(tmp_path / kind)
    backbone = build_hf_backbone(str(tmp_path / kind))
    assert backbone.num_prefix_tokens == prefix
    assert tuple(backbone(torch.randn(1, 3, 32, 32)).shape) == shape  # CLIP/SigLIP: the vision tower alone


def test_a_hub_teacher_from_a_seeded_cache_brings_its_preprocessing(
    pretrained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import huggingface_hub.constants as hub_constants

    from featdistill.weights import WeightsError
    from featdistill.weights.foundation import build_hf_backbone

    def refuse(*args, **kwargs):
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    processor = {
        "image_processor_type": "BitImageProcessor",
        "do_center_crop": True,
        "crop_size": {"height": 40, "width": 40},
        "size": {"shortest_edge": 48},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.2, 0.2, 0.2],
    }
    snapshot = tmp_path / "hub" / "models--facebook--dinov2-small" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    for file in (pretrained["root"] / "dinov2").iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (snapshot / "preprocessor_config.json").write_text(json.dumps(processor))
    teacher = build_hf_backbone("facebook/dinov2-small")
    assert teacher.num_prefix_tokens == 5 and teacher.teacher_input.mean == (0.5, 0.5, 0.5)
    assert teacher.teacher_input.size_for((64, 64)) == (40, 40)  # its crop, in whole 8-pixel patches
    with pytest.raises(WeightsError, match="facebook/dinov2-base is not in the Hugging Face cache"):
        build_hf_backbone("facebook/dinov2-base")


def test_pairs_auto_takes_a_vit_teachers_last_block_as_a_grid_in_bf16(tmp_path: Path, capsys) -> None:
    transformers = pytest.importorskip("transformers")
    import featdistill as fd
    from featdistill.weights.foundation import build_hf_backbone

    _tiny(transformers, "vit").save_pretrained(tmp_path / "vit")
    teacher = build_hf_backbone(str(tmp_path / "vit"))
    student = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
    )
    x = torch.randn(2, 3, 32, 32)
    d = fd.Distiller(student, teacher, pairs="auto", alpha=1.0, sample_input=x, teacher_dtype=torch.bfloat16)
    ((student_layer, teacher_layer),) = [(p.student, p.teacher) for p in d.pairs]
    assert student_layer == "3" and teacher_layer.endswith(".0")  # the last stage (8x8) with the last block
    assert f"3->{teacher_layer}" in capsys.readouterr().out
    dtypes = []
    linear = next(m for m in teacher.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda _m, _i, output: dtypes.append(output.dtype))
    d.teacher_features(x)
    assert dtypes == [torch.bfloat16]  # the teacher's matmuls ran in bf16 (autocast)
    out = d(x)
    assert out.loss.dtype == torch.float32 and out.loss > 0  # the 4x4 patch grid (CLS dropped), in float32


def test_the_two_step_recipe_runs_offline_from_a_seeded_cache(
    pretrained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """configs/pretrain/dinov2_resnet18.yaml, then finetune_classification.yaml, as docs/tasks/pretrain.md gives
    them: the DINOv2 teacher by its repo id from a seeded Hugging Face cache, no network; only sizes, steps and
    folders are set on the command line."""
    import socket

    import huggingface_hub.constants as hub_constants

    def refuse(*args, **kwargs):
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--facebook--dinov2-with-registers-small"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for file in (pretrained["root"] / "dinov2").iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    small = ["--set", "data.image_size=32", "--set", "data.batch_size=4", "--set", "data.workers=0"]
    short = ["--set", "train.epochs=1", "--set", "train.max_steps=2", "--set", "device=cpu"]
    recipes = Path(__file__).resolve().parents[1] / "configs" / "pretrain"

    step1 = [f"data.root={pretrained['root'] / 'unlabeled'}", f"output.dir={tmp_path / 'pretrain'}"]
    args = ["train", str(recipes / "dinov2_resnet18.yaml"), *small, *short]
    assert main([*args, *(a for s in step1 for a in ("--set", s))]) == 0
    backbone = tmp_path / "pretrain" / "last.pt"
    assert backbone.is_file()

    step2 = [
        f"data.root={pretrained['root'] / 'probe'}",
        "model.num_classes=2",
        f"model.student_weights={backbone}",
        f"output.dir={tmp_path / 'finetune'}",
    ]
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"has no classifier head .*fc.bias, fc.weight start from a random"):
        args = ["train", str(recipes / "finetune_classification.yaml"), *small, *short]
        assert main([*args, *(a for s in step2 for a in ("--set", s))]) == 0
    trained = torch.load(tmp_path / "finetune" / "last.pt", map_location="cpu", weights_only=False)
    distilled = torch.load(backbone, map_location="cpu", weights_only=False)["student"]
    assert trained["card"]["task"] == "classification" and "layer4.1.conv2.weight" in distilled
