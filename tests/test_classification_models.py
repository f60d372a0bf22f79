"""Classification model zoo: shapes, tappable stages, parameter counts, build_classifier errors and loading."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from featdistill.tasks.classification.models import (
    CifarResNet,
    build_classifier,
    list_classifiers,
    load_state_dict_file,
    wide_resnet,
)

CIFAR_MODELS = [
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet8x4",
    "wrn_16_1",
    "wrn_16_2",
]

# Exact counts of this implementation (100 classes unless noted), and the published figure they match
# within 3%: CRD/RepDistiller CIFAR-100 tables; ResNet-20/56/110 from He et al. 2016 (CIFAR-10, 10 classes);
# MobileNetV1 from Howard et al. 2017 (ImageNet, 1000 classes).
PARAM_COUNTS = [
    ("resnet20", 10, 272_474, 0.27e6),
    ("resnet56", 10, 855_770, 0.85e6),
    ("resnet110", 10, 1_730_714, 1.7e6),
    ("resnet20", 100, 278_324, None),
    ("resnet56", 100, 861_620, 0.86e6),
    ("resnet110", 100, 1_736_564, 1.7e6),
    ("resnet8x4", 100, 1_233_540, 1.2e6),
    ("resnet32x4", 100, 7_433_860, 7.4e6),
    ("wrn_16_2", 100, 703_284, 0.70e6),
    ("wrn_40_2", 100, 2_255_156, 2.2e6),
    ("mobilenet_v1", 1000, 4_231_976, 4.2e6),
]


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_models_output_shape_and_stages(name: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(name, num_classes=7).eval()
    shapes = {}
    hooks = [
        getattr(model, stage).register_forward_hook(lambda m, i, o, s=stage: shapes.__setitem__(s, o.shape))
        for stage in ("layer1", "layer2", "layer3")
    ]
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, 7)
    assert [s[-1] for s in shapes.values()] == [32, 16, 8]
    assert shapes["layer3"][1] == model.fc.in_features


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "mobilenet_v1"])
def test_stage_outputs_are_not_modified_in_place(name: str) -> None:
    """A tapped stage/block output must keep its value after the rest of the forward pass ran."""
    torch.manual_seed(0)
    model = build_classifier(name).eval()
    captured = {}

    def keep(module_name: str):
        return lambda m, i, o: captured.__setitem__(module_name, (o, o._version, o.clone()))

    for module_name, module in model.named_modules():
        if module_name.startswith(("layer", "features")) and module_name.count(".") <= 1:
            module.register_forward_hook(keep(module_name))
    size = 64 if name == "mobilenet_v1" else 32
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert len(captured) > 3
    for module_name, (output, version, copy) in captured.items():
        assert output._version == version, f"{name}.{module_name} modified in place"
        assert torch.equal(output, copy)


def test_mobilenet_v1_imagenet_shapes() -> None:
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v1", num_classes=1000).eval()
    feats = {}
    model.features[13].register_forward_hook(lambda m, i, o: feats.__setitem__("last", o))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert feats["last"].shape == (1, 1024, 7, 7)
    assert dict(model.named_modules())["features.13"] is model.features[13]


@pytest.mark.parametrize(("name", "num_classes", "exact", "published"), PARAM_COUNTS)
def test_parameter_counts(name: str, num_classes: int, exact: int, published: float | None) -> None:
    count = _num_params(build_classifier(name, num_classes=num_classes))
    assert count == exact
    if published is not None:
        assert abs(count - published) <= 0.03 * published


def test_generic_constructors_and_bad_depth() -> None:
    assert _num_params(wide_resnet(40, 2, num_classes=100)) == 2_255_156
    with pytest.raises(ValueError, match="6n\\+4"):
        wide_resnet(15, 2)
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21, (16, 16, 32, 64))


def test_torchvision_model_by_name() -> None:
    model = build_classifier("resnet18", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert "resnet18" in list_classifiers()
    assert "resnet8x4" in list_classifiers()


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="resnet32x4") as info:
        build_classifier("resnet32x8")
    assert "unknown classifier 'resnet32x8'" in str(info.value)


def test_timm_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match="featdistill\\[hub\\]"):
        build_classifier("timm:resnet18")


def test_missing_pretrained_file(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_classifier("resnet8", pretrained=str(missing))


@pytest.mark.parametrize("wrap", ["raw", "model", "state_dict", "student", "ddp"])
def test_load_local_state_dict(tmp_path, wrap: str) -> None:
    torch.manual_seed(0)
    source = build_classifier("resnet8", num_classes=3)
    state = source.state_dict()
    if wrap == "ddp":
        payload = {f"module.{k}": v for k, v in state.items()}
    else:
        payload = state if wrap == "raw" else {wrap: state, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    torch.manual_seed(1)
    loaded = build_classifier("resnet8", num_classes=3, pretrained=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_not_a_state_dict(tmp_path) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ValueError, match="not a state_dict"):
        load_state_dict_file(path)
