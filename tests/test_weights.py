"""Weights by name (featdistill.weights): local .pt/.safetensors files, torchvision enums from torch's
cache, timm and Hugging Face models from the HF cache, fine-tuning heads, and the one-line errors when
weights are missing, corrupt or of another model. Nothing here touches the network: caches are seeded
in tmp folders and every download function is replaced by one that fails."""

from __future__ import annotations

import socket
import time
import urllib.error
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.distiller import Distiller
from featdistill.tasks.classification.models import build_classifier
from featdistill.tasks.detection.models import build_detector
from featdistill.tasks.segmentation.models import build_segmenter
from featdistill.weights import WeightsError
from featdistill.weights.torchvision_hub import cached_path


def _refuse_download(*args: Any, **kwargs: Any) -> None:
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture(autouse=True)
def no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch and Hugging Face caches in tmp_path; downloads and connections fail at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _refuse_download)
    monkeypatch.setattr(socket, "create_connection", _refuse_download)
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        return tmp_path
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path


def seed_torchvision(name: str) -> dict[str, torch.Tensor]:
    """Random weights of ``name`` saved where torchvision keeps its DEFAULT weights."""
    state = torchvision.models.get_model(name, weights=None).state_dict()
    path = cached_path(torchvision.models.get_model_weights(name).DEFAULT)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def cli_error(capsys: pytest.CaptureFixture, tmp_path: Path, *overrides: str) -> str:
    """Run ``featdistill train`` on a tiny synthetic config; assert one error line, exit 2; return it."""
    tree = tiny_tree(
        tmp_path / "run",
        data={"limit": 8, "val_limit": 8, "batch_size": 4},
        alone=True,
        train=None,
    )
    cfg = write_yaml(tmp_path / "cfg.yaml", tree)
    capsys.readouterr()
    code = main(["train", str(cfg), *[arg for o in overrides for arg in ("--set", o)]])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("featdistill: error: ")
    return lines[0]


# -- local files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".safetensors"])
def test_local_weight_files(tmp_path: Path, suffix: str) -> None:
    source = build_classifier("resnet8", 3).state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        safetensors_torch.save_file(source, path)
    else:
        torch.save(source, path)
    torch.manual_seed(1)
    loaded = build_classifier("resnet8", 3, pretrained=path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())


def test_corrupt_safetensors_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("safetensors")
    bad = tmp_path / "teacher.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    line = cli_error(capsys, tmp_path, "model.teacher=resnet8", f"model.teacher_weights={bad}")
    assert f"cannot read {bad}: Error while deserializing header" in line
    assert "(corrupt or truncated safetensors file?); download or export it again" in line


# -- fine-tuning: the classifier head -------------------------------------------------------------------
def test_head_of_another_class_count_is_left_out_with_one_warning(tmp_path: Path) -> None:
    source = build_classifier("resnet8", 10).state_dict()
    path = tmp_path / "ten_classes.pt"
    torch.save(source, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_classifier("resnet8", 4, pretrained=path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "left out the classifier head fc.weight, fc.bias (10 classes in the file" in messages[0]
    state = model.state_dict()
    assert state["fc.weight"].shape == (4, 64)
    assert all(torch.equal(state[k], v) for k, v in source.items() if not k.startswith("fc."))


def test_mismatch_that_is_not_the_head(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "resnet20.pt"
    torch.save(build_classifier("resnet20", 4).state_dict(), path)
    line = cli_error(capsys, tmp_path, "model.teacher=resnet56", f"model.teacher_weights={path}")
    assert (
        f"{path} does not fit 'resnet56' (CifarResNet): 180 missing in the file (layer1.3.conv1.weight (16, 16, 3, 3)"
        in line
    )
    assert "set the model name to the one that wrote it, or use weights written for 'resnet56'" in line
    # another width: a shape mismatch beside the head is never taken for fine-tuning
    torch.save(build_classifier("resnet8x4", 10).state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"of another shape \(conv1\.weight file \(32, 3, 3, 3\) vs model \(16, 3, 3, 3\)"
    ):
        build_classifier("resnet8", 4, pretrained=path)


def test_segmenter_heads_are_left_out_for_other_classes(tmp_path: Path) -> None:
    source = build_segmenter("pspnet", 5, channels=16).state_dict()
    path = tmp_path / "pspnet5.pt"
    torch.save(source, path)
    model = build_segmenter("pspnet", 3, channels=16)
    from featdistill.weights import load_weights

    with pytest.warns(
        UserWarning, match=r"classifier\.cls\.weight, classifier\.cls\.bias, aux_classifier\.4\.weight"
    ):
        load_weights(model, path, "pspnet", 3)
    assert torch.equal(
        model.state_dict()["backbone.layer4.1.conv2.weight"], source["backbone.layer4.1.conv2.weight"]
    )


# -- torchvision weights by name ----------------------------------------------------------------------
def test_torchvision_weights_from_the_cache() -> None:
    seeded = seed_torchvision("resnet18")
    for spec in ("torchvision", "torchvision:IMAGENET1K_V1", "torchvision:default"):
        with pytest.warns(UserWarning, match=r"resnet18-f37072fd\.pth: left out the classifier head fc"):
            model = build_classifier("resnet18", 5, pretrained=spec)
        assert torch.equal(model.layer4[1].conv2.weight, seeded["layer4.1.conv2.weight"])
    backbone = build_segmenter("pspnet", 3, channels=16, pretrained_backbone="torchvision").backbone
    assert torch.equal(backbone.layer4[1].conv2.weight, seeded["layer4.1.conv2.weight"])
    detector = build_detector("fcos", 3, backbone="resnet18", min_size=64, pretrained_backbone="torchvision")
    assert torch.equal(detector.backbone.body.layer4[1].conv2.weight, seeded["layer4.1.conv2.weight"])


def test_unknown_weights_enum_names_the_closest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = cli_error(
        capsys, tmp_path, "model.student=resnet18", "model.student_weights=torchvision:IMAGENET1K_V9"
    )
    assert (
        "unknown torchvision weights 'torchvision:IMAGENET1K_V9' for resnet18; did you mean 'torchvision:IMAGENET1K_V1'?"
        in line
    )
    with pytest.raises(WeightsError, match="'resnet8' is not one"):
        build_classifier("resnet8", 4, pretrained="torchvision")
    with pytest.raises(WeightsError, match="set the model name to timm:<name>"):
        build_classifier("resnet18", 4, pretrained="timm")


@pytest.mark.parametrize("offline", [True, False])
def test_offline_without_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, offline: bool
) -> None:
    if offline:  # HF_HUB_OFFLINE: no download is even tried
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    start = time.monotonic()
    line = cli_error(capsys, tmp_path, "model.student=resnet18", "model.student_weights=torchvision")
    assert time.monotonic() - start < 30
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    what = "torchvision weights ResNet18_Weights.IMAGENET1K_V1"
    if offline:
        assert f"{what} are not cached and HF_HUB_OFFLINE is set; " in line
    else:
        assert f"cannot download {what} ([Errno -2] Name or service not known); " in line
    assert (
        f"expected {expected}: download https://download.pytorch.org/models/resnet18-f37072fd.pth to that path"
        in line
    )
    assert not expected.exists()


# -- timm and Hugging Face ----------------------------------------------------------------------------
def seed_hf_cache(
    cache: Path, repo: str, files: dict[str, bytes], commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> None:
    """Lay out ``files`` as the Hugging Face cache does for the main revision of ``repo`` (at ``commit``)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / commit / name).write_bytes(data)


def test_timm_weights_from_the_cache_and_offline(no_network: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    name = "test_resnet.r160_in1k"
    with pytest.raises(
        WeightsError,
        match=rf"timm:{name}: timm/{name} is not in the Hugging Face cache .*hf download timm/{name}",
    ):
        build_classifier(f"timm:{name}", 4, pretrained="timm")
    source = timm.create_model(name, pretrained=False).state_dict()
    seed_hf_cache(
        no_network / "hf_cache", f"timm/{name}", {"model.safetensors": safetensors_torch.save(source)}
    )
    with pytest.warns(
        UserWarning, match=r"left out the pretrained classifier fc \(1000 classes, model.num_classes is 4\)"
    ):
        model = build_classifier(f"timm:{name}", 4, pretrained="timm")
    assert torch.equal(model.state_dict()["conv1.0.weight"], source["conv1.0.weight"])


@pytest.fixture
def tiny_hf_classifier(tmp_path: Path) -> tuple[Path, Any]:
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3
    )
    model = transformers.ResNetForImageClassification(config)
    model.save_pretrained(tmp_path / "tiny-resnet")
    return tmp_path / "tiny-resnet", model


def test_hf_directory_as_a_model(tiny_hf_classifier: tuple[Path, Any]) -> None:
    folder, source = tiny_hf_classifier
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same class count: nothing to say
        teacher = build_classifier(f"hf:{folder}", 3)
    stem = "hf.resnet.embedder.embedder.convolution.weight"
    assert torch.equal(teacher.state_dict()[stem], source.resnet.embedder.embedder.convolution.weight)
    assert teacher(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.warns(
        UserWarning, match=r"left out classifier\.1\.bias \(3,\), classifier\.1\.weight \(3, 16\)"
    ):
        assert build_classifier(f"hf:{folder}", 5)(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    # its layers are tapped by their dotted names, like any module's
    d = Distiller(
        build_classifier("resnet8", 3),
        teacher,
        pairs=[("layer3", "hf.resnet.encoder.stages.1")],
        sample_input=torch.randn(2, 3, 32, 32),
    )
    out = d(torch.randn(2, 3, 32, 32))
    assert out.student.shape == (2, 3) and torch.isfinite(out.loss) and out.loss > 0
    with pytest.warns(
        UserWarning, match="trust_remote_code is true, so Python code from that model repository runs"
    ):
        build_classifier(f"hf:{folder}", 3, trust_remote_code=True)


def test_hf_directory_that_is_not_an_image_classifier(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "tiny-bert"
    transformers.BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    ).save_pretrained(folder)
    line = cli_error(capsys, tmp_path, "model.teacher=hf:" + str(folder))
    assert (
        f"hf:{folder} is a 'bert' model, not an image classifier that transformers' AutoModelForImageClassification builds"
        in line
    )
    line = cli_error(capsys, tmp_path, f"model.teacher=hf:{tmp_path}")
    assert f"hf:{tmp_path} has no config.json; give a directory written by save_pretrained" in line


@pytest.mark.parametrize("offline", [True, False])
def test_hf_repo_offline_without_cache(
    no_network: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, offline: bool
) -> None:
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    pytest.importorskip("transformers")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", offline)
    start = time.monotonic()
    line = cli_error(capsys, no_network, "model.teacher=hf:google/vit-base-patch16-224")
    assert time.monotonic() - start < 30
    reason = "HF_HUB_OFFLINE is set" if offline else "cannot reach huggingface.co"
    assert (
        f"google/vit-base-patch16-224 is not in the Hugging Face cache {no_network / 'hf_cache'} and cannot be downloaded ({reason}"
        in line
    )
    assert (
        "download it once on a machine with network (hf download google/vit-base-patch16-224; HF_HOME" in line
    )
