"""The student card: checkpoints that run without their training data, exports that carry their preprocessing.

A tiny classifier is trained through the CLI on a generated ImageFolder of PNGs; ``eval`` / ``export`` then
read only the checkpoint (and the evaluation split), whatever the data options or the training folder say.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import image_folder_data, tiny_tree, write_yaml
from featdistill.card import read_card, sidecar_path
from featdistill.cli.main import main
from featdistill.predict.student import load_student
from featdistill.tasks.decode import decode_image
from featdistill.tasks.preprocess import preprocess
from tiny_data import image_folder

CLASSES = ("cat", "dog")


def _image_folder(root: Path) -> None:
    """16x12 RGB PNGs, 6 per class in train and 3 in test; the classes differ in brightness."""
    rng = np.random.default_rng(0)

    def pixels(label: int, i: int) -> np.ndarray:
        return (rng.integers(0, 160, (16, 12, 3)) + 90 * label).astype(np.uint8)

    image_folder(root, {"train": 6, "test": 3}, CLASSES, pixels)


def _config(tmp_path: Path, **data: object) -> Path:
    data = image_folder_data(tmp_path / "data", **{"batch_size": 4, **data})
    tree = tiny_tree(
        tmp_path / "run", data=data, model={"num_classes": 2}, train={"max_steps": 2}, alone=True
    )
    return write_yaml(tmp_path / "cfg.yaml", tree)


def _train(tmp_path: Path, **data: object) -> tuple[Path, Path, dict]:
    _image_folder(tmp_path / "data")
    cfg = _config(tmp_path, **data)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    return cfg, run / "last.pt", json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    return _train(tmp_path_factory.mktemp("card"))


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _one_line_error(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("featdistill: error: ")
    return err


def _test_pixels(cfg: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split as decoded uint8 pixels, in the evaluation order (class, then file name)."""
    root = Path(yaml.safe_load(cfg.read_text())["data"]["root"]) / "test"
    files = [(label, path) for label, name in enumerate(CLASSES) for path in sorted((root / name).iterdir())]
    pixels = torch.stack([decode_image(path).pixels for _, path in files])
    return pixels, torch.tensor([label for label, _ in files])


def test_checkpoint_card_describes_the_student(trained) -> None:
    _, checkpoint, metrics = trained
    card = read_card(checkpoint)
    assert card["format"] == "featdistill-card-1" and card["task"] == "classification"
    assert card["model"] == {"student": "resnet8", "num_classes": 2, "options": {}}
    assert card["classes"] == list(CLASSES)
    p = card["preprocessing"]
    assert p["input_size"] == [16, 12] and p["resize"] == "none" and p["bits"] == 8
    assert len(p["mean"]) == len(p["std"]) == 3 and p["normalize_in_model"] is False
    assert card["metric"]["name"] == "top1" and card["metric"]["value"] == pytest.approx(metrics["top1"])
    assert card["metric"]["split"] == "test" and card["distillation"] is None
    assert set(card["versions"]) == {"featdistill", "torch"}
    json.dumps(card)  # plain JSON data


@pytest.mark.parametrize(
    "data", [{}, {"in_memory": False}, {"in_memory": False, "crop": "resized", "image_size": 8}]
)
def test_eval_needs_only_the_checkpoint_once_the_training_folder_is_gone(
    tmp_path: Path, capsys, data
) -> None:
    cfg, checkpoint, metrics = _train(tmp_path, **data)
    shutil.rmtree(tmp_path / "data" / "train")
    printed = _eval(capsys, "--checkpoint", str(checkpoint))
    assert printed["top1"] == pytest.approx(metrics["top1"]) and printed["loss"] == pytest.approx(
        metrics["loss"]
    )
    # the training config still works, and gives the same numbers without the training split
    assert _eval(capsys, str(cfg), "--checkpoint", str(checkpoint)) == printed
    task, _, card = load_student(checkpoint)
    batches = torch.cat([images for images, _ in task.build_eval_loader()])
    assert torch.equal(preprocess(_test_pixels(cfg)[0], card), batches)  # what predict will feed it


def test_same_metric_whatever_limit_or_holdout_say(trained, capsys) -> None:
    cfg, checkpoint, metrics = trained
    for options in (["data.limit=2"], ["data.holdout=0.5"], ["data.limit=4", "data.holdout=1"]):
        overrides = [arg for option in options for arg in ("--set", option)]
        printed = _eval(capsys, "--checkpoint", str(checkpoint), *overrides)
        assert printed["top1"] == pytest.approx(metrics["top1"])
        assert printed["loss"] == pytest.approx(metrics["loss"])
        assert _eval(capsys, str(cfg), "--checkpoint", str(checkpoint), *overrides) == printed


def test_preprocess_is_what_eval_feeds_the_student(trained) -> None:
    cfg, checkpoint, _ = trained
    task, _, card = load_student(checkpoint)
    batches = torch.cat([images for images, _ in task.build_eval_loader()])
    pixels, _ = _test_pixels(cfg)
    assert torch.equal(preprocess(pixels, card), batches)
    assert torch.equal(preprocess(list(pixels), card), batches)  # a list of decoded images


def test_onnx_with_preprocessing_on_raw_pixels_predicts_as_eval(trained, tmp_path: Path, capsys) -> None:
    ort = pytest.importorskip("onnxruntime")
    cfg, checkpoint, metrics = trained
    out = tmp_path / "student.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(out)]
    assert main([*args, "--include-preprocessing"]) == 0
    pixels, labels = _test_pixels(cfg)
    session = ort.InferenceSession(str(out))
    assert session.get_inputs()[0].type == "tensor(uint8)"
    logits = session.run(None, {"input": pixels.numpy()})[0]
    _, student, card = load_student(checkpoint)
    with torch.no_grad():
        expected = student(preprocess(pixels, card))
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-4)
    assert (torch.from_numpy(logits).argmax(1) == expected.argmax(1)).all()
    top1 = 100 * float((torch.from_numpy(logits).argmax(1) == labels).float().mean())
    assert top1 == pytest.approx(metrics["top1"])


def test_onnx_without_preprocessing_reproduced_with_the_sidecar(trained, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    cfg, checkpoint, metrics = trained
    out = tmp_path / "plain.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(out)]) == 0
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["export"]["input"]["dtype"] == "float32" and not sidecar["export"]["include_preprocessing"]
    mean = np.array(sidecar["preprocessing"]["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(sidecar["preprocessing"]["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    pixels, labels = _test_pixels(cfg)
    x = (pixels.numpy().astype(np.float32) / 255 - mean) / std
    logits = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    top1 = 100 * float((torch.from_numpy(logits).argmax(1) == labels).float().mean())
    assert top1 == pytest.approx(metrics["top1"])


def test_every_export_writes_sidecar_model_card_and_onnx_metadata(trained, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    _, checkpoint, _ = trained
    card = read_card(checkpoint)
    for fmt, name in (
        ("onnx", "s.onnx"),
        ("export", "s.pt2"),
        ("torchscript", "s.ts"),
        ("state_dict", "s.pt"),
    ):
        out = tmp_path / name
        assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--output", str(out)]) == 0
        sidecar = json.loads(sidecar_path(out).read_text())
        assert {k: v for k, v in sidecar.items() if k != "export"} == card
        assert sidecar["export"]["file"] == name and sidecar["export"]["format"] == fmt
        assert sidecar["export"]["input"] == {
            "name": "input",
            "layout": "NCHW",
            "shape": ["batch", 3, 16, 12],
            "dtype": "float32",
        }
        words = out.with_name(f"{name}.md").read_text()
        assert "resnet8" in words and "cat, dog" in words and "How to call it" in words and name in words
        assert read_card(out) == sidecar  # read_card reads an export's sidecar
    metadata = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "s.onnx")).metadata_props}
    assert metadata["featdistill"] == json.loads(sidecar_path(tmp_path / "s.onnx").read_text())
    assert metadata["classes"] == list(CLASSES) and metadata["preprocessing"] == card["preprocessing"]


def test_pt2_and_torchscript_with_preprocessing_take_uint8_pixels(trained, tmp_path: Path) -> None:
    cfg, checkpoint, _ = trained
    _, student, card = load_student(checkpoint)
    pixels, _ = _test_pixels(cfg)
    with torch.no_grad():
        expected = student(preprocess(pixels, card))
    for fmt, name in (("export", "u8.pt2"), ("torchscript", "u8.ts")):
        out = tmp_path / name
        args = ["export", "--checkpoint", str(checkpoint), "--format", fmt, "--output", str(out)]
        assert main([*args, "--include-preprocessing"]) == 0
        model = torch.export.load(str(out)).module() if fmt == "export" else torch.jit.load(str(out))
        with torch.no_grad():
            torch.testing.assert_close(model(pixels), expected)
        assert json.loads(sidecar_path(out).read_text())["export"]["input"]["dtype"] == "uint8"


def test_weights_only_formats_refuse_include_preprocessing(trained, tmp_path: Path, capsys) -> None:
    _, checkpoint, _ = trained
    args = ["export", "--checkpoint", str(checkpoint), "--format", "state_dict", "--include-preprocessing"]
    err = _one_line_error(capsys, *args, "--output", str(tmp_path / "w.pt"))
    assert "--format state_dict holds weights only" in err


def test_config_with_other_preprocessing_is_refused(trained, capsys) -> None:
    cfg, checkpoint, _ = trained
    err = _one_line_error(capsys, "eval", str(cfg), "--checkpoint", str(checkpoint), "--set", "data.bits=16")
    assert "preprocessing bits 16 differs from" in err and "'s 8 (its card)" in err
    err = _one_line_error(
        capsys, "export", "--checkpoint", str(checkpoint), "--set", "data.image_size=8", "--output", "x.pt2"
    )
    assert "differs from" in err and "use the config that trained it, or give no config" in err
    mean = "data.options={mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}"
    err = _one_line_error(capsys, "eval", str(cfg), "--checkpoint", str(checkpoint), "--set", mean)
    assert "preprocessing mean [0.5, 0.5, 0.5] differs from" in err


def test_older_checkpoint_without_card_works_with_its_config_and_one_warning(
    trained, tmp_path, capsys
) -> None:
    cfg, checkpoint, metrics = trained
    state = torch.load(checkpoint, weights_only=True)
    del state["card"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(cfg), "--checkpoint", str(old)]) == 0
    said = [w for w in caught if "has no student card" in str(w.message)]
    assert len(said) == 1
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(metrics["top1"])
    err = _one_line_error(capsys, "eval", "--checkpoint", str(old))
    assert "has no student card" in err and "pass the config that trained it" in err
    torch.save(state["student"], tmp_path / "plain.pt")
    err = _one_line_error(capsys, "eval", "--checkpoint", str(tmp_path / "plain.pt"))
    assert "is a plain state_dict" in err


def test_distilled_student_card_names_teacher_method_pairs_and_alpha(tmp_path: Path) -> None:
    _image_folder(tmp_path / "data")
    cfg = _config(tmp_path)
    tree = yaml.safe_load(cfg.read_text())
    tree["model"]["teacher"] = "resnet8"
    tree["distill"] = {"method": "cwt", "alpha": 0.5}
    cfg.write_text(yaml.safe_dump(tree))
    assert main(["train", str(cfg)]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    distillation = read_card(checkpoint)["distillation"]
    assert distillation["teacher"] == "resnet8" and distillation["method"] == "cwt"
    assert distillation["alpha"] == {"cwt": 0.5} and len(distillation["pairs"]) == 1
    assert distillation["pairs"][0][2] == "cwt"
    out = tmp_path / "student.pt2"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(out)]) == 0
    words = out.with_name("student.pt2.md").read_text()
    assert "Distilled from the teacher `resnet8` with cwt" in words and "alpha cwt 0.5" in words


def test_include_preprocessing_refuses_a_16_bit_student(trained, tmp_path: Path) -> None:
    from featdistill.export import export_student

    _, checkpoint, _ = trained
    _, student, card = load_student(checkpoint)
    card["preprocessing"]["bits"] = 16
    with pytest.raises(ValueError, match=r"trained on 16-bit pixels \(data\.bits: 16\); export without it"):
        export_student(student, "export", tmp_path / "s.pt2", torch.zeros(2, 3, 16, 12), card, True)
