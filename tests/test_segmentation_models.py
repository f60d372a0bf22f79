"""Segmenters of every family (hf:, smp:, timm: backbones) through the CLI on a ``masks``-layout folder, and
cross-family distillation with ``pairs: auto``. Random-init models, 32x32 generated data, offline."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_tree
from featdistill.card import read_card
from featdistill.cli.main import main
from featdistill.config import load_config
from featdistill.tasks.segmentation.task import SegmentationTask
from tiny_data import write_png

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("transformers")

CLASSES = 3
SIZE = 32


def masks_tree(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``root/<split>/images/**.png`` with ``root/<split>/masks/**.png`` (class ids 0..2, 255 ignored), one
    pair in a subfolder, plus one image without a mask and one mask without an image in ``train``."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for i in range(count):
            name = f"sub/{i}" if i == 0 else str(i)
            mask = rng.integers(0, CLASSES, (SIZE, SIZE), dtype=np.uint8)
            mask[:2] = 255
            image = np.repeat((mask * 80)[..., None], 3, axis=2) + rng.integers(0, 30, (SIZE, SIZE, 3))
            write_png(root / split / "images" / f"{name}.png", image.astype(np.uint8))
            write_png(root / split / "masks" / f"{name}.png", mask)
    write_png(root / "train" / "images" / "lonely.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    write_png(root / "train" / "masks" / "orphan.png", np.zeros((SIZE, SIZE), np.uint8))
    return root


def segformer_dir(path: Path, hidden: tuple[int, ...] = (8, 16, 16, 16)) -> Path:
    """A random-init SegFormer (4 stages at strides 4..32, widths ``hidden``) written by save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        depths=[1, 1, 1, 1],
        sr_ratios=[4, 2, 1, 1],
        hidden_sizes=list(hidden),
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16,
        num_labels=CLASSES,
    )
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return masks_tree(tmp_path_factory.mktemp("masks"), {"train": 4, "val": 2})


@pytest.fixture(scope="module")
def segformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return segformer_dir(tmp_path_factory.mktemp("segformer"))


def _config(tmp_path: Path, data: Path, student: str, options: dict, **extra: dict) -> Path:
    tree = tiny_tree(
        tmp_path / "run",
        "segmentation",
        alone=True,
        drop=["model.options"],
        data={
            "name": "masks",
            "root": str(data),
            "val_split": "val",
            "options": {"crop_size": SIZE},
            "batch_size": 2,
        },
        model={"student": student, "num_classes": CLASSES, "options": options},
        train={"lr": 0.01, "log_every": 1},
        **extra,
    )
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("hf", {}),
        ("smp:Unet/resnet18", {"encoder_weights": None, "decoder_channels": [16, 8, 8, 8, 8]}),
        ("pspnet", {"backbone": "timm:test_efficientnet", "channels": 16, "bins": [1, 2, 4]}),
    ],
)
def test_train_eval_predict_export_through_the_cli(
    tmp_path: Path, data: Path, segformer: Path, family: str, options: dict, capsys
) -> None:
    student = f"hf:{segformer}" if family == "hf" else family
    cfg = _config(tmp_path, data, student, options)
    run = tmp_path / "run"
    assert main(["train", str(cfg)]) == 0
    report = json.loads((run / "data.json").read_text())["splits"][0]
    assert report["images"] == 4
    assert report["skipped"]["image without mask"]["count"] == 1
    assert report["skipped"]["mask without image"]["count"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 100.0

    capsys.readouterr()
    checkpoint = str(run / "last.pt")
    assert main(["eval", str(cfg), "--checkpoint", checkpoint]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["miou"] == pytest.approx(
        metrics["miou"]
    )

    predictions = tmp_path / "predictions"
    images = str(data / "val" / "images")
    assert main(["predict", checkpoint, images, "--output", str(predictions), "--no-progress"]) == 0
    written = sorted(p.relative_to(predictions / "labels") for p in (predictions / "labels").rglob("*.png"))
    assert [str(p) for p in written] == ["1.png", "sub/0.png"]

    onnx = tmp_path / "student.onnx"
    assert (
        main(["export", str(cfg), "--checkpoint", checkpoint, "--format", "onnx", "--output", str(onnx)]) == 0
    )
    ort = pytest.importorskip("onnxruntime")
    model = SegmentationTask(load_config(cfg)).build_student().eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["student"])
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    expected = expected["out"] if isinstance(expected, dict) else expected
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    ("teacher", "teacher_options", "pairs"),
    [
        (
            "smp:Unet/resnet18",
            {"encoder_weights": None},
            ["stages.0->encoder.layer1", "stages.1->encoder.layer2", "stages.2->encoder.layer3"],
        ),
        # at 32x32 the SegFormer's 1/16 map and the dilated ResNet's 1/8 output are 2x apart: the backbone outputs
        (
            "pspnet",
            {"backbone": "resnet18", "channels": 16},
            ["stages.0->backbone.layer1", "stages.2->backbone.layer4"],
        ),
    ],
)
def test_segformer_learns_from_another_family_with_auto_pairs(
    tmp_path: Path, data: Path, segformer: Path, teacher: str, teacher_options: dict, pairs: list, capsys
) -> None:
    cfg = _config(
        tmp_path,
        data,
        f"hf:{segformer}",
        {"teacher": teacher_options},
        distill={"method": "cwt", "pairs": "auto", "alpha": 1e-2},
    )
    tree = yaml.safe_load(cfg.read_text())
    tree["model"]["teacher"] = teacher
    tree["train"]["epochs"] = 2
    cfg.write_text(yaml.safe_dump(tree))

    assert main(["layers", str(cfg)]) == 0
    listed = capsys.readouterr().out
    chosen = next(line for line in listed.splitlines() if line.startswith("pairs 'auto' would choose"))
    for pair in pairs:
        assert pair in chosen

    assert main(["train", str(cfg)]) == 0
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    distilled = [key for key in rows[0] if key.startswith("train/cwt:stages.")]
    assert len(distilled) >= len(pairs)
    losses = [float(row[distilled[0]]) for row in rows if row[distilled[0]]]
    assert losses and all(np.isfinite(losses))
    assert losses[-1] < losses[0]  # the CWT branch and the student close in on the teacher's features


def test_two_segformers_pair_stage_by_stage_under_auto_pairs(
    tmp_path: Path, data: Path, segformer: Path
) -> None:
    """A SegFormer declares its stage maps (``feature_levels``): a deeper, wider one as teacher pairs each of the
    four strides once, map with map, not again as the last block's tokens that a trace would also see."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    from featdistill.distiller.auto_pairs import plan_auto_pairs

    config = SegformerConfig(
        depths=[2, 1, 2, 1], hidden_sizes=[16, 24, 32, 48], num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16, num_labels=CLASSES,
    )  # fmt: skip
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "b2")
    cfg = load_config(
        _config(
            tmp_path, data, f"hf:{segformer}", {}, distill={"method": "cwt", "pairs": "auto", "alpha": 1.0}
        )
    )
    cfg.model.teacher = f"hf:{tmp_path / 'b2'}"
    task = SegmentationTask(cfg)
    student, teacher = task.build_student(), task.build_teacher()
    plan = plan_auto_pairs(student, teacher, task.sample_input(), task.teacher_forward)
    assert [(p.student, p.teacher) for p in plan.pairs] == [(f"stages.{i}",) * 2 for i in range(4)]
    assert plan.reasons == [f"the backbone level at stride {s} in both models" for s in (4, 8, 16, 32)]


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in tmp_path, and no network."""
    import socket

    import huggingface_hub.constants as hub_constants

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path / "hf_cache"


def test_smp_encoder_weights_by_name_from_a_seeded_cache_and_offline(empty_hub: Path) -> None:
    from safetensors.torch import save
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    from featdistill.tasks.segmentation.models import build_model
    from featdistill.weights import WeightsError
    from test_weights import seed_hf_cache

    with pytest.raises(
        WeightsError, match=r"smp-hub/resnet18.imagenet is not in the Hugging Face cache .*cannot reach"
    ):
        build_model("smp:Unet/resnet18", CLASSES, encoder_weights="imagenet")
    torch.manual_seed(1)
    state = get_encoder("resnet18", weights=None).state_dict()
    settings = encoders["resnet18"]["pretrained_settings"]["imagenet"]
    files = {"config.json": b"{}", "model.safetensors": save(state)}
    seed_hf_cache(empty_hub, settings["repo_id"], files, commit=settings["revision"])
    model = build_model("smp:Unet/resnet18", CLASSES, encoder_weights="imagenet")
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match=r"unknown encoder_weights 'imagenett' .*did you mean 'imagenet'"):
        build_model("smp:Unet/resnet18", CLASSES, encoder_weights="imagenett")


def test_one_line_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from transformers import ViTConfig

    from featdistill.tasks.segmentation.models import build_model
    from featdistill.weights import WeightsError

    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path / "vit")
    with pytest.raises(WeightsError, match="is a 'vit' model, not a semantic segmenter that transformers'"):
        build_model(f"hf:{tmp_path / 'vit'}", CLASSES)
    with pytest.raises(ValueError, match=r"unknown smp architecture 'Unett' .*did you mean 'Unet'"):
        build_model("smp:Unett/resnet18", CLASSES)
    with pytest.raises(ValueError, match=r"unknown smp encoder 'resnet1' .*did you mean 'resnet18'"):
        build_model("smp:Unet/resnet1", CLASSES)
    with pytest.raises(ValueError, match=r"unknown timm encoder 'resnet1'; did you mean 'resnet18'"):
        build_model("pspnet", CLASSES, backbone="timm:resnet1")
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)
    with pytest.raises(ImportError, match=r"pip install 'featdistill\[seg\]'"):
        build_model("smp:Unet/resnet18", CLASSES)


def test_hf_segmenter_by_repo_id_from_a_seeded_cache(empty_hub: Path, segformer: Path) -> None:
    from featdistill.tasks.segmentation.models import build_model
    from featdistill.weights import WeightsError
    from test_weights import seed_hf_cache

    with pytest.raises(WeightsError, match="acme/segformer-tiny is not in the Hugging Face cache"):
        build_model("hf:acme/segformer-tiny", CLASSES)
    files = {name: (segformer / name).read_bytes() for name in ("config.json", "model.safetensors")}
    seed_hf_cache(empty_hub, "acme/segformer-tiny", files)
    model = build_model("hf:acme/segformer-tiny", CLASSES).eval()
    local = build_model(f"hf:{segformer}", CLASSES).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["out"], local(x)["out"])
    assert model(x)["out"].shape == (1, CLASSES, SIZE, SIZE)  # upsampled to the input, as the built-in heads
    assert len(model.stages) == 4


def upernet_dir(path: Path) -> Path:
    """A random-init transformers UperNet on a tiny ConvNeXt (pyramid pooling bins 1, 2, 3, 6 on its 1/32 map)."""
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = ConvNextConfig(
        depths=[1, 1, 1, 1],
        hidden_sizes=[8, 16, 16, 16],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_channels=8, num_labels=CLASSES)
    torch.manual_seed(0)
    UperNetForSemanticSegmentation(config).save_pretrained(path)
    return path


@pytest.mark.filterwarnings("ignore:.*has no student card")  # a plain state_dict of the random-init student
@pytest.mark.parametrize(
    ("student", "options"),
    [("smp:PSPNet/resnet18", {"encoder_weights": None}), ("hf:upernet", {})],
)
def test_onnx_refusal_is_one_line_of_ours(
    tmp_path: Path, data: Path, student: str, options: dict, capfd: pytest.CaptureFixture
) -> None:
    """A segmenter torch.onnx cannot convert (pyramid pooling whose bins do not divide the map) ends in one
    line naming it, the reason and the formats that work; torch's graph dump and traceback are not shown."""
    pytest.importorskip("onnx")
    if student == "hf:upernet":
        student = f"hf:{upernet_dir(tmp_path / 'upernet')}"
    cfg = _config(tmp_path, data, student, options)
    weights = tmp_path / "student.pt"
    torch.save(SegmentationTask(load_config(cfg)).build_student().state_dict(), weights)
    export = ["export", str(cfg), "--checkpoint", str(weights), "--output"]
    capfd.readouterr()
    assert main([*export, str(tmp_path / "student.onnx"), "--format", "onnx"]) == 2
    out, err = capfd.readouterr()
    assert out == ""  # torch.onnx prints the whole graph to stdout when it fails
    assert err.count("\n") == 1, err
    assert (
        f"featdistill: error: {student} cannot be exported to ONNX at {SIZE}x{SIZE}: its pyramid pooling"
        in err
    )
    assert "use --format torchscript or the default --format export (.pt2)" in err
    assert not (tmp_path / "student.onnx").exists()
    assert main([*export, str(tmp_path / "student.ts"), "--format", "torchscript"]) == 0


@pytest.mark.filterwarnings("ignore:.*has no student card")  # a plain state_dict of the random-init student
def test_pt2_refusal_is_one_line_of_ours(tmp_path: Path, data: Path, capfd: pytest.CaptureFixture) -> None:
    """pspnet on a timm ConvNeXt: torch.export captures it but cannot save its math.ceil node; one line naming
    the model and the format that works, nothing written."""
    options = {"backbone": "timm:test_convnext", "channels": 16, "bins": [1, 2, 4]}
    cfg = _config(tmp_path, data, "pspnet", options)
    weights = tmp_path / "student.pt"
    torch.save(SegmentationTask(load_config(cfg)).build_student().state_dict(), weights)
    capfd.readouterr()
    export = ["export", str(cfg), "--checkpoint", str(weights), "--output", str(tmp_path / "student.pt2")]
    assert main(export) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1, err
    assert (
        "featdistill: error: pspnet cannot be saved as a torch.export program (.pt2): its graph holds a "
        in err
    )
    assert "use --format torchscript" in err
    assert not (tmp_path / "student.pt2").exists()


def _labels(folder: Path) -> dict[str, np.ndarray]:
    """predict's label PNGs under ``folder/labels`` by relative path."""
    from PIL import Image

    root = folder / "labels"
    return {str(p.relative_to(root)): np.asarray(Image.open(p)) for p in sorted(root.rglob("*.png"))}


@pytest.mark.parametrize("family", ["hf", "pretrained_backbone"])
def test_predict_rebuilds_the_student_without_its_weight_sources(
    tmp_path: Path, data: Path, family: str
) -> None:
    """predict from last.pt once the hf: folder, or the pretrained_backbone file, is deleted: the card keeps the
    transformers config, and a student rebuilt for a checkpoint fetches no pretrained weights (the checkpoint
    overwrites them all); the same labels as before."""
    from featdistill.tasks.segmentation.models import TimmBackbone

    if family == "hf":
        source = segformer_dir(tmp_path / "segformer")
        student, options = f"hf:{source}", {}
    else:
        source = tmp_path / "backbone.pt"
        torch.save(TimmBackbone("test_efficientnet").body.state_dict(), source)
        student = "pspnet"
        options = {"backbone": "timm:test_efficientnet", "pretrained_backbone": str(source), "channels": 16}
    assert main(["train", str(_config(tmp_path, data, student, options))]) == 0
    checkpoint, images = tmp_path / "run" / "last.pt", data / "val" / "images"

    def predict(name: str) -> dict[str, np.ndarray]:
        out = tmp_path / name
        assert main(["predict", str(checkpoint), str(images), "--output", str(out), "--no-progress"]) == 0
        return _labels(out)

    before = predict("before")
    shutil.rmtree(source) if source.is_dir() else source.unlink()
    after = predict("after")
    assert list(after) == list(before) == ["1.png", "sub/0.png"]
    for name, labels in before.items():
        np.testing.assert_array_equal(after[name], labels)


def test_compare_hf_smp_and_timm_students_then_predict_from_their_cards(tmp_path: Path, data: Path) -> None:
    """An hf: SegFormer, an smp: U-Net and a PSPNet on a timm encoder as arms of one compare, each reported; the
    card of the hf: and smp: students holds what predict needs, so that their exports predict as their
    checkpoints do, the hf: model's folder gone."""
    segformer = segformer_dir(tmp_path / "hf_segformer")  # this test's own: it is deleted below
    arms = {
        "segformer": {"model.student": f"hf:{segformer}"},
        "unet": {
            "model.student": "smp:Unet/resnet18",
            "model.options": {"decoder_channels": [16, 8, 8, 8, 8]},
        },
        "psp_timm": {
            "model.student": "pspnet",
            "model.options": {"backbone": "timm:test_efficientnet", "channels": 16, "bins": [1, 2, 4]},
        },
    }
    cfg = _config(tmp_path, data, f"hf:{segformer}", {}, compare={"arms": arms})
    assert main(["compare", str(cfg)]) == 0
    run = tmp_path / "run"
    record = json.loads((run / "compare.json").read_text())
    assert record["metric"] == "val miou"
    reported = {arm["values"]["arm"]: arm for arm in record["arms"]}
    assert sorted(reported) == sorted(arms)
    for arm in record["arms"]:
        (result,) = arm["runs"]
        assert result["status"] == "done" and 0.0 <= result["metric"] <= 100.0, result
    table = (run / "compare.md").read_text()
    assert all(f"| {name} |" in table for name in arms)

    images = str(data / "val" / "images")
    exported = {}
    for arm in (reported["segformer"], reported["unet"]):
        checkpoint = Path(arm["runs"][0]["dir"]) / "last.pt"
        card = read_card(checkpoint)
        assert card["task"] == "segmentation" and card["model"]["student"] == arm["set"]["model.student"]
        assert card["classes"] == ["0", "1", "2"] and card["ignore_index"] == 255
        assert card["preprocessing"]["input_size"] == [SIZE, SIZE] and len(card["preprocessing"]["mean"]) == 3
        out = tmp_path / arm["values"]["arm"]
        assert (
            main(["predict", str(checkpoint), images, "--output", str(out / "eager"), "--no-progress"]) == 0
        )
        scripted = out / "student.ts"  # TorchScript: quicker to write than .pt2
        assert (
            main(
                [
                    "export",
                    "--checkpoint",
                    str(checkpoint),
                    "--output",
                    str(scripted),
                    "--format",
                    "torchscript",
                ]
            )
            == 0
        )
        sidecar = json.loads((out / "student.ts.json").read_text())
        assert {key: sidecar[key] for key in card} == card  # the card, plus what the file takes
        exported[out] = scripted
    shutil.rmtree(segformer)  # an export runs without the model's source
    for out, scripted in exported.items():
        assert main(["predict", str(scripted), images, "--output", str(out / "ts"), "--no-progress"]) == 0
        eager, traced = _labels(out / "eager"), _labels(out / "ts")
        assert list(eager) == ["1.png", "sub/0.png"] and list(traced) == list(eager)
        for name, labels in eager.items():
            np.testing.assert_array_equal(traced[name], labels)
