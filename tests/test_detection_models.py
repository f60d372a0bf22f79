"""Detectors beyond torchvision's ResNets: ``hf:`` DETR-family students (a random-init RT-DETR saved with
save_pretrained, nothing fetched) and ``timm:`` backbones under torchvision's detectors, each trained,
evaluated from its checkpoint and run by predict on a YOLO-layout folder; cross-family pairs by stride."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.distiller.auto_pairs import head_of, plan_auto_pairs, plan_pairs
from featdistill.taps import trace_outputs
from featdistill.tasks.detection import DetectionTask
from featdistill.tasks.detection.hf_detector import HFDetector
from tiny_data import detection_formats

pytestmark = pytest.mark.usefixtures("one_thread")
transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")


def tiny_rtdetr(folder: Path, num_labels: int = 2) -> Path:
    """A random RT-DETR of a few hundred thousand parameters (ResNet stages of 16-128 channels, one encoder and
    decoder layer), written by save_pretrained; its backbone is built, not downloaded."""
    backbone = transformers.RTDetrResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = transformers.RTDetrConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        encoder_in_channels=[32, 64, 128],
        encoder_hidden_dim=32,
        decoder_in_channels=[32, 32, 32],
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        num_denoising=4,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    transformers.AutoModelForObjectDetection.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    roots = detection_formats(
        tmp_path_factory.mktemp("data"), np.random.default_rng(1), {"train": 4, "val": 3}
    )
    return roots["yolo"]


@pytest.fixture(scope="module")
def rtdetr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_rtdetr(tmp_path_factory.mktemp("hf") / "rtdetr")


HF_OPTIONS = {
    "min_size": 64,
    "max_size": 64,
}  # the tiny images at their own size (not 800 px), for every family


def _config(tmp_path: Path, yolo: Path, student: str, **model) -> Path:
    tree = tiny_tree(
        tmp_path / "run",
        task="detection",
        alone=True,
        data={"name": "yolo", "root": str(yolo), "val_split": "val", "batch_size": 2},
        model={"student": student, **model},
        train={"epochs": 1, "lr": 0.001},
    )
    return write_yaml(tmp_path / "run.yaml", tree)


def _train_eval_predict(config: Path, yolo: Path, tmp_path: Path, capsys) -> list[dict]:
    out = tmp_path / "run"
    assert main(["train", str(config)]) == 0
    trained = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= trained["bbox/AP"] <= 1.0
    capsys.readouterr()
    assert main(["eval", str(config), "--checkpoint", str(out / "last.pt")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["bbox/AP"] == pytest.approx(trained["bbox/AP"])
    predictions = tmp_path / "predictions.json"
    images = yolo / "images" / "val"
    assert main(["predict", str(out / "last.pt"), str(images), "--output", str(predictions)]) == 0
    found = json.loads(predictions.read_text())
    assert {f["file_name"] for f in found} <= {p.name for p in images.iterdir()}
    assert found and {f["category_name"] for f in found} <= {"cat", "dog"}
    return found


def test_an_hf_rtdetr_student_trains_evaluates_and_predicts_on_yolo_labels(yolo, rtdetr, tmp_path, capsys):
    found = _train_eval_predict(
        _config(tmp_path, yolo, f"hf:{rtdetr}", options=HF_OPTIONS), yolo, tmp_path, capsys
    )
    assert {f["category_id"] for f in found} <= {0, 1}  # YOLO class indices, not HF's 0-based labels + 1
    for f in found:  # boxes in the 64 x 32 image's own pixels
        x, y, w, h = f["bbox"]
        assert x >= -1e-3 and x + w <= 64 + 1e-3 and y >= -1e-3 and y + h <= 32 + 1e-3


def test_a_timm_backbone_faster_rcnn_trains_evaluates_and_predicts_on_yolo_labels(yolo, tmp_path, capsys):
    config = _config(tmp_path, yolo, "fasterrcnn", options={"backbone": "timm:resnet10t", **HF_OPTIONS})
    _train_eval_predict(config, yolo, tmp_path, capsys)


def test_a_faster_rcnn_teacher_pairs_with_the_rtdetr_student_backbone_by_stride(yolo, rtdetr):
    tree = tiny_tree(
        task="detection",
        data={"name": "yolo", "root": str(yolo), "val_split": "val"},
        model={"student": f"hf:{rtdetr}", "teacher": "fasterrcnn", "options": HF_OPTIONS},
        distill={"method": "cwt", "alpha": 1.0},
    )
    task = DetectionTask(parse_config(tree))
    student, teacher = task.build_student(), task.build_teacher()
    assert task.default_pairs(student, teacher) == [
        ("hf.model.backbone[0][0]", "backbone[1]"),  # stride 8
        ("hf.model.backbone[1][0]", "backbone[2]"),  # stride 16
        ("hf.model.backbone[2][0]", "backbone[3]"),  # stride 32
    ]
    assert task.default_pairs(student, task._build(f"hf:{rtdetr}", "teacher", None)) == [
        *[(f"hf.model.backbone[{i}][0]",) * 2 for i in range(3)],
        *[(f"hf.model.encoder[last_hidden_state][{i}]",) * 2 for i in range(3)],
    ]


def test_pairs_auto_pairs_rtdetr_backbone_and_encoder_levels_by_stride_never_a_head(
    yolo, rtdetr, tmp_path, capsys
):
    """``pairs: auto`` takes the levels the HF detector declares (backbone stages, encoder maps), not the stem's
    ``embedder.pooler`` or any head, the same pairs as the default; ``featdistill layers`` shows them."""
    tree = tiny_tree(
        task="detection",
        data={"name": "yolo", "root": str(yolo), "val_split": "val"},
        model={"student": f"hf:{rtdetr}", "teacher": f"hf:{rtdetr}", "options": HF_OPTIONS},
        distill={"method": "cwt", "alpha": 1.0, "pairs": "auto"},
    )
    task = DetectionTask(parse_config(tree))
    student, teacher = task.build_student(), task.build_teacher()
    plan = plan_auto_pairs(student, teacher, task.sample_input(), task.teacher_forward)
    chosen = [(p.student, p.teacher) for p in plan.pairs]
    assert chosen == task.default_pairs(student, teacher)
    assert plan.reasons[0] == "the backbone level at stride 8 in both models"
    assert plan.reasons[-1] == "the encoder level at stride 32 in both models"
    assert main(["layers", str(write_yaml(tmp_path / "auto.yaml", tree))]) == 0
    out = capsys.readouterr().out
    assert "pairs 'auto' would choose: " + ", ".join(f"{s}->{t}" for s, t in chosen) in out
    assert "pooler" not in out.split("pairs 'auto' would choose")[1]


def test_pairs_auto_on_a_traced_hf_detector_leaves_out_its_heads_and_positional_encodings():
    """YOLOS declares no levels (no ``model.backbone``): the traced rules leave its box and class predictors
    out; DETR's sine positional encoding is no feature either."""
    yolos = transformers.YolosConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=[64, 64],
        patch_size=16, num_detection_tokens=5, num_labels=2,
    )  # fmt: skip
    images = ([torch.rand(3, 48, 64)],)
    forward = DetectionTask.teacher_forward

    def detector(config: object) -> HFDetector:
        return HFDetector(transformers.AutoModelForObjectDetection.from_config(config), 64, 64)

    plan = plan_auto_pairs(detector(yolos), detector(yolos), images, forward)
    assert {head_of(p.student) for p in plan.pairs} == {None}
    assert "student 'hf.bbox_predictor' and its layers: a head (it makes the predictions)" in plan.left_out
    backbone = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", out_features=["stage2"]
    )
    detr = transformers.DetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=16,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=5, num_labels=2,
    )  # fmt: skip
    with torch.no_grad():
        traced = trace_outputs(detector(detr).eval(), lambda m: m(*images), include_unsafe=True)
    plan = plan_pairs(traced, traced)  # DETR declares its backbone level: the traced rules on their own
    assert {head_of(p.student) for p in plan.pairs} == {None}
    assert "hf.model.position_embedding" not in {p.student for p in plan.pairs}
    why = "student 'hf.model.position_embedding': a positional encoding (computed from positions, not from the image)"
    assert why in plan.left_out


def test_compare_runs_two_arms_of_an_hf_rtdetr_student(yolo, rtdetr, tmp_path):
    """``featdistill compare``: the RT-DETR student alone and distilled from an RT-DETR teacher, one seed."""
    out = tmp_path / "cmp"
    tree = tiny_tree(
        out,
        task="detection",
        data={"name": "yolo", "root": str(yolo), "val_split": "val", "batch_size": 2},
        model={"student": f"hf:{rtdetr}", "options": HF_OPTIONS},
        distill={"method": "cwt", "alpha": 1.0},
        train={"epochs": 1, "lr": 0.001},
    )
    config = write_yaml(tmp_path / "cmp.yaml", tree)
    grid = ["--grid", f"model.teacher=null,hf:{rtdetr}", "--seeds", "0"]
    assert main(["compare", str(config), *grid]) == 0
    record = json.loads((out / "compare.json").read_text())
    assert [arm["values"] for arm in record["arms"]] == [
        {"model.teacher": None},
        {"model.teacher": f"hf:{rtdetr}"},
    ]
    for arm in record["arms"]:
        (run,) = arm["runs"]
        assert run["status"] == "done" and 0.0 <= run["metric"] <= 1.0
        assert json.loads((Path(run["dir"]) / "metrics.json").read_text())["bbox/AP"] == run["metric"]


@pytest.mark.parametrize("family", ["hf", "timm"])
def test_the_card_rebuilds_the_student_from_a_moved_run_folder_alone(family, yolo, rtdetr, tmp_path):
    """predict from a run folder moved elsewhere, its ``hf:`` folder deleted: the card holds the transformers
    config (a ``timm:`` backbone is built from its name), the checkpoint the weights; same detections."""
    source = shutil.copytree(rtdetr, tmp_path / "rtdetr")
    student, options = (
        (f"hf:{source}", HF_OPTIONS)
        if family == "hf"
        else ("fasterrcnn", {"backbone": "timm:resnet10t", **HF_OPTIONS})
    )
    config = _config(tmp_path, yolo, student, options=options)
    assert main(["train", str(config)]) == 0
    images = yolo / "images" / "val"

    def predict(run: Path, name: str) -> list[dict]:
        out = tmp_path / name
        assert (
            main(["predict", str(run / "last.pt"), str(images), "--output", str(out), "--no-progress"]) == 0
        )
        return json.loads(out.read_text())

    before = predict(tmp_path / "run", "before.json")
    moved = shutil.move(tmp_path / "run", tmp_path / "elsewhere")
    shutil.rmtree(source)
    assert predict(Path(moved), "after.json") == before
