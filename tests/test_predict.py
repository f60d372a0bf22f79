"""``featdistill predict`` end to end on tiny generated data: its outputs scored against the ground truth give
``eval``'s metrics (classification from the checkpoint alone with the training folder deleted, eager,
``.pt2`` and ONNX alike; segmentation label PNGs; detection COCO results), and the "Use the student" commands
and ONNX snippet of docs/export_predict.md run as written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import image_folder_data, tiny_tree, write_yaml
from doc_blocks import command_lines, python_block
from featdistill.card import read_card
from featdistill.cli.main import main
from featdistill.predict.score import score_predictions
from tiny_data import image_folder

CLASSES = ("ant", "bee", "cow")
PAGE = "docs/export_predict.md"  # its "Use the student" section is run as written here


def _cli(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    """Run the CLI; assert success; return its stdout."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _run(capsys: pytest.CaptureFixture, *args: str | Path) -> dict:
    """Run the CLI; assert success; return its last JSON line on stdout."""
    return json.loads([line for line in _cli(capsys, *args).splitlines() if line.startswith("{")][-1])


def _imagefolder(root: Path, per_class: dict[str, int]) -> None:
    """``root/<split>/<class>/k.png``: 16x16 images whose mean colour depends on the class, plus noise."""
    generator = np.random.default_rng(0)

    def pixels(c: int, k: int) -> np.ndarray:
        base = np.array([60 + 70 * c, 200 - 60 * c, 120], dtype=np.int64)
        return np.clip(base + generator.integers(-60, 60, (16, 16, 3)), 0, 255).astype(np.uint8)

    image_folder(root, per_class, CLASSES, pixels)


def _train(tmp_path: Path, capsys: pytest.CaptureFixture, **tiny: Any) -> Path:
    """Train :func:`conftest.tiny_tree` of ``tiny`` into ``tmp_path / "run"``; return its ``last.pt``."""
    _run(capsys, "train", write_yaml(tmp_path / "cfg.yaml", tiny_tree(tmp_path / "run", **tiny)))
    return tmp_path / "run" / "last.pt"


@pytest.fixture
def classifier(tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[Path, Path]:
    """A resnet8 trained two epochs on a tiny ImageFolder whose training split is then deleted."""
    _imagefolder(tmp_path / "data", {"train": 8, "test": 6})
    data = image_folder_data(tmp_path / "data", batch_size=8, val_split="test")
    checkpoint = _train(
        tmp_path, capsys, data=data, model={"num_classes": 3}, train={"epochs": 2}, alone=True
    )
    shutil.rmtree(tmp_path / "data" / "train")
    return checkpoint, tmp_path / "data" / "test"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_classification_predict_equals_eval_from_the_checkpoint_alone(
    classifier: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, test = classifier
    trained = json.loads((checkpoint.parent / "metrics.json").read_text())
    evaluated = _run(capsys, "eval", "--checkpoint", checkpoint)
    assert evaluated["top1"] == pytest.approx(trained["top1"])
    runs = {}
    for name, model in {
        "eager": checkpoint,
        "pt2": tmp_path / "student.pt2",
        "onnx": tmp_path / "student.onnx",
        "onnx_uint8": tmp_path / "pixels.onnx",
    }.items():
        if name != "eager":
            fmt = ["--format", "onnx"] if name.startswith("onnx") else []
            pixels = ["--include-preprocessing"] if name == "onnx_uint8" else []
            _cli(capsys, "export", "--checkpoint", checkpoint, "--output", model, *fmt, *pixels)
        out = tmp_path / f"{name}.csv"
        report = _run(capsys, "predict", model, test, "--output", out, "--top-k", "2", "--no-progress")
        assert report["images"] == 18 and report["bad_files"] == 0 and report["task"] == "classification"
        rows = _csv(out)
        correct = sum(Path(row["file"]).parent.name == row["class_1"] for row in rows)
        assert {row["class_1"] for row in rows} <= set(CLASSES) and len(rows) == 18
        assert 100 * correct / 18 == pytest.approx(evaluated["top1"]) == pytest.approx(report["top1"])
        runs[name] = rows
    for name in ("pt2", "onnx", "onnx_uint8"):  # the same classes, the same probabilities
        assert [r["class_1"] for r in runs[name]] == [r["class_1"] for r in runs["eager"]]
        for row, eager in zip(runs[name], runs["eager"]):
            assert float(row["prob_1"]) == pytest.approx(float(eager["prob_1"]), abs=1e-4)


def test_bad_files_and_unknown_inputs_are_one_line_errors(
    classifier: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, test = classifier
    (test / "ant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(checkpoint), str(test), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.png" in err[0] and "--on-bad-file skip" in err[0], err
    with pytest.warns(UserWarning, match="skipping undecodable image"):
        report = _run(
            capsys, "predict", checkpoint, test, "--output", out, "--on-bad-file", "skip", "--no-progress"
        )
    assert (
        report["images"] == 18
        and report["bad_files"] == 1
        and report["bad_files_first"][0].endswith("broken.png")
    )
    assert main(["predict", str(checkpoint), str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "input " in capsys.readouterr().err


def _camvid(root: Path) -> None:
    """A CamVid-layout folder (3 classes + void 3): images whose left half is class 0, right half class 1/2."""
    generator = np.random.default_rng(1)
    (root).mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"classes": ["sky", "road", "car"], "void_label": 3}))
    for split, count in {"train": 4, "val": 3}.items():
        (root / split).mkdir()
        (root / f"{split}annot").mkdir()
        for k in range(count):
            labels = np.zeros((24, 32), dtype=np.uint8)
            labels[:, 16:] = 1 + k % 2
            labels[:2] = 3  # void
            pixels = np.stack([labels * 80, 255 - labels * 60, labels * 20], axis=-1).astype(np.int64)
            pixels = np.clip(pixels + generator.integers(-30, 30, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / f"{k}.png")
            Image.fromarray(labels).save(root / f"{split}annot" / f"{k}.png")


def test_segmentation_label_pngs_score_like_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from featdistill.tasks.segmentation.data import build_dataset

    _camvid(tmp_path / "camvid")
    checkpoint = _train(
        tmp_path,
        capsys,
        task="segmentation",
        data={"root": str(tmp_path / "camvid"), "options": {"crop_size": 24}},
        model={"num_classes": 3, "options": {"aux": False, "channels": 16}},
        drop=["data.in_memory"],
    )
    evaluated = _run(capsys, "eval", "--checkpoint", checkpoint)
    out = tmp_path / "labels"
    images = tmp_path / "camvid" / "val"
    report = _run(capsys, "predict", checkpoint, images, "--output", out, "--overlay", "--no-progress")
    assert report["images"] == 3
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["0.png", "1.png", "2.png"]
    scored = score_predictions(
        "segmentation", out, build_dataset("camvid", tmp_path / "camvid", "val"), images_root=images
    )
    for key in ("miou", "pixel_acc", "mean_acc"):
        assert scored[key] == pytest.approx(evaluated[key], abs=1e-6), key


def test_detection_results_score_like_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pycocotools")
    from test_detection_cli import _one_category_coco

    ann = _one_category_coco(tmp_path / "data", images=3)
    heads = (
        "rpn_pre_nms_top_n_test: 50, rpn_post_nms_top_n_test: 20, box_detections_per_img: 10, "
        "box_score_thresh: 0.0, rpn_pre_nms_top_n_train: 50, rpn_post_nms_top_n_train: 20, "
        "box_batch_size_per_image: 16"
    )
    checkpoint = _train(
        tmp_path,
        capsys,
        task="detection",
        data={
            "root": str(tmp_path / "data"),
            "batch_size": 3,
            "options": {"ann_file": "ann.json", "images": "images", "save_results": True},
        },
        model={"options": yaml.safe_load(f"{{min_size: 64, max_size: 96, backbone: resnet18, {heads}}}")},
        drop=["data.val_split"],
    )
    evaluated = _run(capsys, "eval", "--checkpoint", checkpoint)
    out = tmp_path / "detections.json"
    report = _run(
        capsys,
        "predict",
        checkpoint,
        tmp_path / "data" / "images",
        "--output",
        out,
        "--draw",
        "--no-progress",
    )
    assert report["images"] == 3
    results = json.loads(out.read_text())
    assert (
        results
        and {r["category_name"] for r in results} == {"box"}
        and {r["category_id"] for r in results} == {7}
    )
    assert sorted(p.name for p in (tmp_path / "detections_drawn").iterdir()) == ["0.png", "1.png", "2.png"]
    # the same detections as eval's own results file (eval writes it with save_results), box for box
    by_id = {entry["id"]: entry["file_name"] for entry in json.loads(ann.read_text())["images"]}
    eval_results = json.loads((tmp_path / "run" / "results_bbox.json").read_text())
    assert len(results) == len(eval_results) > 0
    for mine, theirs in zip(results, eval_results):
        assert mine["file_name"] == by_id[theirs["image_id"]] and mine["category_id"] == theirs["category_id"]
        assert mine["bbox"] == pytest.approx(theirs["bbox"], abs=1e-3)
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
    scored = score_predictions("detection", out, ann)
    for key in ("bbox/AP", "bbox/AP50", "bbox/AR100"):
        assert scored[key] == pytest.approx(evaluated[key], abs=1e-6), key
    # the scorer is not trivially 0: the ground truth itself, as predictions, scores AP 1
    truth = tmp_path / "truth.json"
    gt = json.loads(ann.read_text())["annotations"]
    truth.write_text(
        json.dumps(
            [
                {"file_name": by_id[a["image_id"]], "bbox": a["bbox"], "category_id": 7, "score": 1.0}
                for a in gt
            ]
        )
    )
    assert score_predictions("detection", truth, ann)["bbox/AP"] == pytest.approx(1.0)


def test_hf_export_runs_in_a_transformers_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=3,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "tiny-vit")
    _imagefolder(tmp_path / "data", {"train": 4, "test": 2})
    checkpoint = _train(
        tmp_path,
        capsys,
        data=image_folder_data(tmp_path / "data", batch_size=4, val_split="test"),
        model={"student": f"hf:{tmp_path / 'tiny-vit'}", "num_classes": 3},
        train={"lr": 0.01},
        alone=True,
    )
    folder = tmp_path / "hf_student"
    _cli(capsys, "export", "--checkpoint", checkpoint, "--format", "hf", "--output", folder)
    out = tmp_path / "p.csv"
    _run(
        capsys,
        "predict",
        checkpoint,
        tmp_path / "data" / "test",
        "--output",
        out,
        "--top-k",
        "3",
        "--no-progress",
    )
    expected = _csv(out)
    classify = transformers.pipeline("image-classification", model=str(folder), device="cpu")
    for row in expected:
        with Image.open(row["file"]) as image:
            top = classify(image, top_k=3)
        assert [t["label"] for t in top] == [row[f"class_{k}"] for k in (1, 2, 3)]
        assert [t["score"] for t in top] == pytest.approx(
            [float(row[f"prob_{k}"]) for k in (1, 2, 3)], abs=1e-4
        )


def test_an_hf_classifier_predicts_from_its_checkpoint_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The card keeps the transformers config: with the hf: folder deleted, predict rebuilds the student from
    last.pt alone and gives the same classes and probabilities."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=3,
    )  # fmt: skip
    source = tmp_path / "tiny-vit"
    transformers.ViTForImageClassification(config).save_pretrained(source)
    _imagefolder(tmp_path / "data", {"train": 4, "test": 2})
    checkpoint = _train(
        tmp_path,
        capsys,
        data=image_folder_data(tmp_path / "data", batch_size=4, val_split="test"),
        model={"student": f"hf:{source}", "num_classes": 3},
        alone=True,
    )
    assert read_card(checkpoint)["model"]["config"]["model_type"] == "vit"

    def predict(name: str) -> list[dict[str, str]]:
        out = tmp_path / f"{name}.csv"
        test = tmp_path / "data" / "test"
        _run(capsys, "predict", checkpoint, test, "--output", out, "--top-k", "3", "--no-progress")
        return _csv(out)

    before = predict("before")
    shutil.rmtree(source)
    assert predict("after") == before


def test_hf_export_of_another_student_is_refused(
    classifier: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    args = ["export", "--checkpoint", str(classifier[0]), "--format", "hf", "--output", str(tmp_path / "hf")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "--format hf writes Hugging Face image classifiers (model.student: hf:...); this student is 'resnet8'"
        in err
    )


def test_docs_use_the_student_runs_as_written(
    classifier: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The section's commands (with the checkpoint and test folder made here) and its onnxruntime snippet."""
    checkpoint, test = classifier
    commands = command_lines(PAGE, "Use the student")
    snippet = python_block(PAGE, "onnxruntime")
    assert len(snippet.strip().splitlines()) <= 6  # imports + five lines
    monkeypatch.chdir(tmp_path)
    Path("runs/try").mkdir(parents=True)
    shutil.copy(checkpoint, "runs/try/last.pt")
    shutil.copytree(test, "photos")
    for line in commands:
        words = line.split("#")[0].split()[1:]
        assert main(words) == 0, line
    shutil.copy("photos/bee/0.png", "photo.png")
    printed = capsys.readouterr()
    exec(compile(snippet, PAGE, "exec"), {})
    top = capsys.readouterr().out.strip()
    expected = next(r for r in _csv(Path("predictions.csv")) if r["file"].endswith("bee/0.png"))
    assert top == expected["class_1"], printed


def test_hf_export_of_a_16_bit_student_is_refused(tmp_path: Path) -> None:
    from featdistill.hf_export import save_hf

    class Wrapper(torch.nn.Module):  # an hf: student: the transformers model as .hf
        def __init__(self) -> None:
            super().__init__()
            self.hf = type("Model", (), {"save_pretrained": lambda self, folder: None})()

    card = {"task": "classification", "model": {"student": "hf:x"}, "preprocessing": {"bits": 16}}
    with pytest.raises(
        ValueError, match="trained on 16-bit images, but Hugging Face image processors read 8-bit"
    ):
        save_hf(Wrapper(), card, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
