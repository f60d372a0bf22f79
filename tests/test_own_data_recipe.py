"""The "Your own data" recipe (docs/own_data.md), end to end and offline: fine-tune a pretrained teacher on an
ImageFolder, distill it into a pretrained MobileNetV3 with CWT, export. Pretrained weights come from a
seeded torch cache (files of the right shapes under the names torchvision expects) and a local Hugging
Face directory written by ``save_pretrained``; any network access fails the test."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from featdistill.cli.main import main
from featdistill.weights.torchvision_hub import cached_path
from tiny_data import image_folder

REPO = Path(__file__).resolve().parents[1]
TEACHER_CFG = REPO / "configs" / "classification" / "own_data_teacher.yaml"
CWT_CFG = REPO / "configs" / "classification" / "own_data_cwt.yaml"


def _no_network(*args, **kwargs):
    raise AssertionError("the recipe tried to use the network")


def seed_torchvision_cache(name: str) -> dict[str, torch.Tensor]:
    """Write random weights of ``name`` where torchvision keeps its DEFAULT weights; return them."""
    state = torchvision.models.get_model(name, weights=None).state_dict()
    path = cached_path(torchvision.models.get_model_weights(name).DEFAULT)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def student_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """TORCH_HOME with the student's (mobilenet_v3_large) DEFAULT weights seeded; the network is cut."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    return seed_torchvision_cache("mobilenet_v3_large")


def _image_folder(root: Path) -> Path:
    generator = torch.Generator().manual_seed(0)

    def pixels(label: int, i: int) -> np.ndarray:
        return (
            torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8) // 2 + 100 * label
        ).numpy()

    return image_folder(root, {"train": 4, "val": 4}, ("cat", "dog"), pixels)


def _small(data: Path, out: Path) -> list[str]:
    settings = [
        "device=cpu",
        f"data.root={data}",
        "data.image_size=32",
        "data.workers=0",
        "data.batch_size=4",
        "train.epochs=1",
        "train.lr=0",  # weights stay as loaded: the test can check where they came from
        f"output.dir={out}",
        "output.tensorboard=false",
        "output.progress=false",
    ]
    return [arg for setting in settings for arg in ("--set", setting)]


def _run_recipe(
    tmp_path: Path, teacher: list[str], teacher_name: str, sweep_alpha: bool = True
) -> dict[str, torch.Tensor]:
    """The recipe's three commands (train, sweep, export) with the given teacher settings; returns the student.

    Without ``sweep_alpha`` the second command is the page's alternative, ``train`` with ``alpha: auto``.
    """
    data = _image_folder(tmp_path / "data")
    teacher_run, cwt_run = tmp_path / "teacher", tmp_path / "cwt"
    with pytest.warns(UserWarning, match="left out"):  # the pretrained head of another class count
        assert main(["train", str(TEACHER_CFG), *_small(data, teacher_run), *teacher]) == 0
    distill = [
        "--set",
        f"model.teacher={teacher_name}",
        "--set",
        f"model.teacher_weights={teacher_run}/last.pt",
    ]
    refit = cwt_run / "refit"
    if sweep_alpha:
        command = ["sweep", str(CWT_CFG), *_small(data, cwt_run), *distill]
        command += ["--grid", "distill.alpha=auto,1e-4", "--refit"]
    else:
        command = ["train", str(CWT_CFG), *_small(data, refit), *distill]
    with pytest.warns(UserWarning, match=r"left out the classifier head classifier\.3\.weight"):
        assert main(command) == 0
    assert (refit / "metrics.json").is_file()
    assert (cwt_run / "best.yaml").is_file() == sweep_alpha
    onnx_file = tmp_path / "student.onnx"
    export = ["export", str(CWT_CFG), *_small(data, cwt_run), "--checkpoint", str(refit / "last.pt")]
    assert main([*export, "--format", "onnx", "--output", str(onnx_file)]) == 0
    assert onnx_file.stat().st_size > 1_000_000
    checkpoint = torch.load(refit / "last.pt", weights_only=True)
    assert any(name.startswith("0.") for name in checkpoint["transforms"])  # one CWT pair was trained
    return checkpoint["student"]


def test_recipe_with_a_torchvision_teacher(tmp_path: Path, student_cache: dict[str, torch.Tensor]) -> None:
    seeded_teacher = seed_torchvision_cache("resnet18")
    teacher = ["--set", "model.student=resnet18", "--set", "model.student_weights=torchvision"]
    student = _run_recipe(tmp_path, teacher, "resnet18")
    teacher_state = torch.load(tmp_path / "teacher" / "last.pt", weights_only=True)["student"]
    assert torch.equal(teacher_state["conv1.weight"], seeded_teacher["conv1.weight"])
    assert teacher_state["fc.weight"].shape == (2, 512)
    assert torch.equal(student["features.0.0.weight"], student_cache["features.0.0.weight"])
    assert student["classifier.3.weight"].shape == (2, 1280)


def test_recipe_with_a_hugging_face_teacher(tmp_path: Path, student_cache: dict[str, torch.Tensor]) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3
    )
    hf_dir = tmp_path / "tiny-resnet"
    hf_model = transformers.ResNetForImageClassification(config)
    hf_model.save_pretrained(hf_dir)
    teacher = ["--set", f"model.student=hf:{hf_dir}", "--set", "model.student_weights=null"]
    _run_recipe(tmp_path, teacher, f"hf:{hf_dir}", sweep_alpha=False)
    teacher_state = torch.load(tmp_path / "teacher" / "last.pt", weights_only=True)["student"]
    stem = "hf.resnet.embedder.embedder.convolution.weight"
    assert torch.equal(teacher_state[stem], hf_model.resnet.embedder.embedder.convolution.weight)
    assert teacher_state["hf.classifier.1.weight"].shape == (2, 16)
