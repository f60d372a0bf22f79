"""Export: torch.export (default), ONNX checked with onnxruntime, safetensors; at the trained image size."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import image_folder_data, tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.export import default_format, export_student
from featdistill.tasks.classification.models import build_classifier
from featdistill.tasks.classification.task import ClassificationTask
from featdistill.tasks.detection.models import build_detector
from featdistill.tasks.detection.task import DetectionTask
from featdistill.tasks.segmentation.models import build_segmenter
from featdistill.tasks.segmentation.task import SegmentationTask
from tiny_data import image_folder

# ONNX Runtime against eager PyTorch, float32 on CPU: measured differences are ~1e-7.
ONNX_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _config(tmp_path: Path) -> tuple[Path, Path]:
    """An ImageFolder of 28x24 (H x W) images, a resnet8 config on it and a checkpoint of that student."""
    rng = np.random.default_rng(0)
    image_folder(
        tmp_path / "data",
        {"train": 2},
        ("a", "b"),
        lambda c, i: rng.integers(0, 255, (28, 24, 3), dtype=np.uint8),
    )
    tree = tiny_tree(data=image_folder_data(tmp_path / "data"), model={"num_classes": 2}, alone=True)
    path = write_yaml(tmp_path / "cfg.yaml", tree)
    torch.manual_seed(0)
    torch.save(build_classifier("resnet8", 2).state_dict(), tmp_path / "student.pt")
    return path, tmp_path / "student.pt"


def _student(checkpoint: Path) -> nn.Module:
    student = build_classifier("resnet8", 2)
    student.load_state_dict(torch.load(checkpoint, weights_only=True))
    return student.eval()


def test_sample_input_has_the_training_image_size(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path)
    task = ClassificationTask(parse_config(yaml.safe_load(cfg.read_text())))
    assert task.sample_input().shape == (2, 3, 28, 24)  # read from the data, not the 32x32 default


def test_each_task_gives_its_export_example_and_output_words(tmp_path: Path) -> None:
    """The task, not the CLI, says what an export is traced with and, for the model card, what it returns."""
    assert ClassificationTask(parse_config(tiny_tree())).export_example().shape == (2, 3, 16, 16)
    detection = DetectionTask(parse_config(tiny_tree(task="detection", data={"root": str(tmp_path)})))
    (image,) = detection.export_example()  # detectors take a list of images: one
    assert image.shape == (3, 48, 64)
    card = {"ignore_index": 255}
    assert ClassificationTask.describe_outputs(card).startswith("logits `[batch, classes]`")
    assert "label 255 ignored in training" in SegmentationTask.describe_outputs(card)
    assert DetectionTask.describe_outputs(card).startswith("per image: boxes (xyxy), labels, scores")


def test_onnx_export_runs_in_onnxruntime_at_the_trained_and_other_sizes(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    cfg, checkpoint = _config(tmp_path)
    out = tmp_path / "student.onnx"
    assert (
        main(["export", str(cfg), "--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(out)])
        == 0
    )
    session = ort.InferenceSession(str(out))
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    student = _student(checkpoint)
    for shape in [(3, 3, 28, 24), (1, 3, 40, 36)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = student(x).numpy()
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, **ONNX_TOLERANCE)


def test_onnx_export_of_a_fixed_size_model_takes_the_trained_size(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 28 * 24, 5)).eval()
    export_student(model, "onnx", tmp_path / "fixed.onnx", torch.randn(2, 3, 28, 24))
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"))
    assert session.get_inputs()[0].shape == ["batch", 3, 28, 24]
    x = torch.randn(3, 3, 28, 24)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, **ONNX_TOLERANCE)


def test_default_export_is_a_torch_export_program_with_dynamic_sizes(tmp_path: Path, capsys) -> None:
    cfg, checkpoint = _config(tmp_path)
    out = tmp_path / "student.pt2"
    assert main(["export", str(cfg), "--checkpoint", str(checkpoint), "--output", str(out)]) == 0
    assert capsys.readouterr().out.startswith("wrote export to ")
    program = torch.export.load(str(out)).module()
    student = _student(checkpoint)
    for shape in [(3, 3, 28, 24), (2, 3, 36, 40)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(program(x), student(x))


def test_safetensors_export_loads_back(tmp_path: Path) -> None:
    load_file = pytest.importorskip("safetensors.torch").load_file
    cfg, checkpoint = _config(tmp_path)
    out = tmp_path / "student.safetensors"
    args = [
        "export",
        str(cfg),
        "--checkpoint",
        str(checkpoint),
        "--format",
        "safetensors",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    expected = _student(checkpoint).state_dict()
    loaded = load_file(str(out))
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value)


def test_segmenter_exports_with_dynamic_height_and_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_segmenter("fcn", 3, backbone="resnet18", aux=False).eval()
    export_student(model, "export", tmp_path / "seg.pt2", torch.randn(2, 3, 32, 32))
    program = torch.export.load(str(tmp_path / "seg.pt2")).module()
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(program(x)["out"], model(x)["out"])


def test_detectors_default_to_torchscript_and_refuse_torch_export(tmp_path: Path) -> None:
    images = [torch.rand(3, 16, 16)]
    assert default_format(images) == "torchscript"
    assert default_format(torch.rand(2, 3, 16, 16)) == "export"
    with pytest.raises(ValueError, match=r"takes a list of images.*use --format torchscript or onnx"):
        export_student(nn.Identity(), "export", tmp_path / "det.pt2", images)


def test_export_without_the_data_asks_for_the_image_size(tmp_path: Path, capsys) -> None:
    cfg, checkpoint = _config(tmp_path)
    args = ["export", str(cfg), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "s.pt2")]
    assert main([*args, "--set", f"data.root={tmp_path / 'gone'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image folder not found" in err and "set data.image_size" in err
    assert main([*args, "--set", f"data.root={tmp_path / 'gone'}", "--set", "data.image_size=28"]) == 0


def test_detector_onnx_export_takes_images_of_any_size(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    detector = build_detector("fasterrcnn", 3, backbone="resnet18", min_size=64, max_size=96).eval()
    export_student(detector, "onnx", tmp_path / "det.onnx", [torch.rand(3, 48, 64)])
    session = ort.InferenceSession(str(tmp_path / "det.onnx"))
    assert session.get_inputs()[0].shape == [3, "height", "width"]
    assert [o.name for o in session.get_outputs()] == ["boxes0", "labels0", "scores0"]
    image = torch.rand(3, 60, 80)
    with torch.no_grad():
        expected = detector([image])[0]
    boxes, labels, scores = session.run(None, {"image0": image.numpy()})
    # Box coordinates are in pixels: measured differences are below 1e-4.
    np.testing.assert_allclose(boxes, expected["boxes"].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(labels, expected["labels"].numpy())
    np.testing.assert_allclose(scores, expected["scores"].numpy(), **ONNX_TOLERANCE)


@pytest.mark.parametrize(("name", "dynamic"), [("fcn", True), ("pspnet", False)])
def test_segmenter_onnx_is_dynamic_where_the_exporter_allows(
    tmp_path: Path, name: str, dynamic: bool
) -> None:
    # PSPNet's pyramid pooling (adaptive pooling to 2, 3, 6 bins) cannot be exported with a symbolic size,
    # so it keeps the trained height and width.
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_segmenter(name, 3, backbone="resnet18", aux=False).eval()
    export_student(model, "onnx", tmp_path / "seg.onnx", torch.randn(2, 3, 48, 48))
    session = ort.InferenceSession(str(tmp_path / "seg.onnx"))
    assert session.get_inputs()[0].shape == (
        ["batch", 3, "height", "width"] if dynamic else ["batch", 3, 48, 48]
    )
    assert session.get_outputs()[0].name == "out"
    x = torch.randn(1, 3, 64, 56) if dynamic else torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, **ONNX_TOLERANCE)


class _Antialiased(nn.Module):
    """A segmenter-like model with an op torch.onnx has no form for (smp:DPT resizes its position embeddings so)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=0.5, mode="bicubic", antialias=True)


def test_a_model_onnx_cannot_convert_is_refused_in_one_line(tmp_path: Path, capfd) -> None:
    pytest.importorskip("onnx")
    with pytest.raises(ValueError) as refused:
        export_student(_Antialiased(), "onnx", tmp_path / "m.onnx", torch.randn(2, 3, 16, 16))
    assert str(refused.value) == (
        "_Antialiased cannot be exported to ONNX at 16x16: it uses aten::_upsample_bicubic2d_aa, which has no "
        "ONNX opset 17 form; use --format torchscript or the default --format export (.pt2), which predict runs "
        "as well (docs/tasks/segmentation.md, Export limits)"
    )
    assert capfd.readouterr().out == ""
    assert not (tmp_path / "m.onnx").exists()


class _Ceil(nn.Module):
    """Pools to a size computed with math.ceil of its input's, as pspnet on a timm ConvNeXt does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, math.ceil(x.shape[-1] / 3))


def test_a_program_torch_cannot_save_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        export_student(_Ceil(), "export", tmp_path / "m.pt2", torch.randn(2, 3, 16, 16))
    assert str(refused.value) == (
        "_Ceil cannot be saved as a torch.export program (.pt2): its graph holds a math.ceil node that torch "
        "cannot serialise; use --format torchscript, which predict runs as well (docs/tasks/segmentation.md, "
        "Export limits)"
    )
    assert not (tmp_path / "m.pt2").exists()
