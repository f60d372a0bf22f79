"""Settings that would ruin a run are refused, or named in a warning, before training (issue 19).

Each case goes through the API (``fd.Distiller``) and, where a config reaches it, the CLI (one line, exit 2).
Each is a row of ``docs/reliability.md``.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import featdistill as fd
from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import ConfigError, parse_config
from featdistill.tasks.classification.models import build_classifier

X = torch.randn(2, 3, 16, 16)
BASE = tiny_tree(  # a one-step run
    data={"limit": 16, "val_limit": 8, "batch_size": 8},
    distill={"pairs": [["layer3", "layer3"]]},
    train={"max_steps": 1},
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _nets() -> tuple[nn.Module, nn.Module]:
    return build_classifier("resnet8", 4), build_classifier("resnet14", 4)


def _distiller(
    student: nn.Module | None = None, teacher: nn.Module | None = None, **kwargs: Any
) -> fd.Distiller:
    s, t = _nets()
    kwargs = {"pairs": [("layer3", "layer3")], "sample_input": X, "verbose": False, **kwargs}
    return fd.Distiller(student or s, teacher or t, **kwargs)


def _cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "warning" not in line.lower()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("featdistill: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _warnings_of(run: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught]


# -- alpha and auto_ratio -------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [-1.0, math.nan, math.inf, {"cwt": -2.0}])
def test_negative_nan_or_infinite_alpha_is_refused(alpha: Any) -> None:
    with pytest.raises(ValueError, match=r"alpha of method 'cwt' is .*: it must be a finite number >= 0"):
        _distiller(alpha=alpha)


def test_alpha_zero_switches_the_term_off_and_set_alpha_is_checked() -> None:
    d = _distiller(alpha=0.0)
    assert d(X).loss.item() == 0.0
    with pytest.raises(ValueError, match="alpha of method 'cwt' is -1"):
        d.balancer.set({"cwt": -1.0})
    with pytest.raises(TypeError, match="must be a number or 'auto'"):
        d.balancer.set({"cwt": "big"})
    with pytest.raises(ValueError, match=r"alpha of method 'cwt' must be a number here, got 'auto'"):
        d.balancer.set({"cwt": "auto"})
    with pytest.raises(ValueError, match=r"alpha given for method\(s\) \['kd'\] that no pair uses"):
        d.balancer.set({"kd": 1.0})
    d.balancer.set({"cwt": 2.0})
    assert d.alpha == {"cwt": 2.0}


@pytest.mark.parametrize("ratio", [0.0, -1.0, math.nan, math.inf])
def test_auto_ratio_must_be_positive_and_finite(ratio: float) -> None:
    with pytest.raises(
        ValueError, match=r"auto_ratio \(alpha 'auto', distill.auto_ratio\) must be positive and finite"
    ):
        _distiller(alpha="auto", auto_ratio=ratio)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("distill.alpha=-1", "distill.alpha is -1: it must be a finite number >= 0"),
        ("distill.alpha=.nan", "distill.alpha is nan"),
        ("distill.alpha=.inf", "distill.alpha is inf"),
        ("distill.alpha={cwt: -0.5}", "distill.alpha.cwt is -0.5"),
        ("distill.auto_ratio=0", "distill.auto_ratio is 0: it must be a finite number > 0"),
    ],
)
def test_bad_alpha_or_auto_ratio_in_the_config(
    tiny_config, tmp_path: Path, capsys, override: str, message: str
) -> None:
    _one_line_error(*_cli(capsys, "train", tiny_config(base=BASE), "--set", override), message)
    assert not (tmp_path / "run" / "last.pt").exists()
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=message.split(":")[0]):
        parse_config({**BASE, "distill": {key.split(".")[1]: yaml.safe_load(value)}})


# -- student and teacher ------------------------------------------------------------------------------
def test_the_same_module_as_student_and_teacher_is_refused() -> None:
    student = build_classifier("resnet8", 4)
    with pytest.raises(ValueError, match="student and teacher are the same module"):
        _distiller(student, student)


def test_shared_parameters_are_refused() -> None:
    student = build_classifier("resnet8", 4)
    teacher = copy.deepcopy(student)
    teacher.layer1 = student.layer1  # a teacher built around the student's own stage
    with pytest.raises(ValueError, match=r"student and teacher share 6 parameter\(s\) \(e\.g\. 'layer1\.0\."):
        _distiller(student, teacher)


class Pack(nn.Module):
    """Returns a feature map with a scalar and a count, as a model returning (features, loss, n) does."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        return x, x.mean(), 3


class Unpack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Pack())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x)[0].mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("selector", "error", "message"),
    [
        (
            "net[5]",
            ValueError,
            r"pair 'net\[5\]' -> 'net\[0\]': tap 'net\[5\]': index 5 out of range for length 3",
        ),
        (
            "net[1]",
            ValueError,
            r"pair 'net\[1\]' -> 'net\[0\]': the student feature 'net\[1\]' has shape \(\)",
        ),
        ("net[2]", TypeError, r"pair 'net\[2\]' -> 'net\[0\]': the student feature 'net\[2\]' is a int"),
        ("net[out]", ValueError, r"pair 'net\[out\]' -> 'net\[0\]': .*use an integer index"),
    ],
)
def test_a_selector_out_of_range_or_on_a_non_tensor_names_the_pair(
    selector: str, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _distiller(Unpack(), Unpack(), pairs=[(selector, "net[0]")])


def test_a_bad_selector_through_the_cli(tiny_config, capsys) -> None:
    code, err = _cli(
        capsys, "train", tiny_config(base=BASE), "--set", "distill.pairs=[['layer3[0]', layer3]]"
    )
    _one_line_error(
        code, err, "pair 'layer3[0]' -> 'layer3': tap 'layer3[0]': cannot select '0' from a Tensor"
    )


def test_unknown_layer_says_student_or_teacher() -> None:
    with pytest.raises(fd.TapError, match=r"unknown layer 'layer9' in CifarResNet \(the teacher\)"):
        _distiller(pairs=[("layer3", "layer9")])
    with pytest.raises(fd.TapError, match=r"unknown layer 'layer9' in CifarResNet \(the student\)"):
        _distiller(pairs=[("layer9", "layer3")])


def test_hf_layers_with_and_without_the_hf_prefix() -> None:
    transformers = pytest.importorskip("transformers")
    from featdistill.weights.huggingface import HFImageClassifier

    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=8,
    )
    student, teacher = (HFImageClassifier(transformers.ViTForImageClassification(config)) for _ in range(2))
    with_prefix = dict(student.named_modules())["hf.vit.layers.1"]
    layer = "vit.layers.1" if "hf.vit.layers.1" in dict(teacher.named_modules()) else "vit.encoder.layer.1"
    d = _distiller(student, teacher, pairs=[(layer, f"hf.{layer}")])
    assert d(X).loss.item() > 0
    assert with_prefix is not None


# -- teacher dtype and device -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 1e-4), (torch.bfloat16, 0.1), (torch.float16, 0.02)]
)
def test_a_teacher_in_another_dtype_runs_in_its_own(dtype: torch.dtype, tolerance: float) -> None:
    student, teacher = _nets()
    torch.manual_seed(1)
    reference = _distiller(student, teacher, alpha=1.0)(X).loss.item()
    torch.manual_seed(1)  # the same transform initialisation
    d = _distiller(student, copy.deepcopy(teacher).to(dtype), alpha=1.0)
    out = d(X)
    assert out.loss.dtype == torch.float32 and next(d.teacher.parameters()).dtype == dtype
    assert out.loss.item() == pytest.approx(reference, rel=tolerance)
    out.loss.backward()  # the student's gradient flows through float32 as before
    assert student.layer3[0].conv1.weight.grad is not None


def test_a_teacher_on_the_meta_device_is_refused() -> None:
    with torch.device("meta"):
        teacher = build_classifier("resnet14", 4)
    with pytest.raises(
        ValueError, match=r"the teacher CifarResNet has parameters on the meta device .* no values"
    ):
        _distiller(teacher=teacher)


# -- shapes -----------------------------------------------------------------------------------------
def test_maps_more_than_2x_apart_warn_and_strict_shapes_refuses() -> None:
    found = _warnings_of(lambda: _distiller(pairs=[("layer1", "layer3")]))
    assert found == [
        "pair 'layer1' -> 'layer3': the student map (2, 16, 16, 16) and the teacher map (2, 64, 4, 4) differ 4x "
        "in height or width; the student map is resized to the teacher's, so the two see the image at different "
        "strides: pair layers of the same stride, or set distill.options.strict_shapes: true to refuse such pairs"
    ]
    assert _warnings_of(lambda: _distiller(pairs=[("layer2", "layer3")])) == []  # 2x: no warning
    with pytest.raises(ValueError, match=r"differ 4x .* \(distill.options.strict_shapes is set\)"):
        _distiller(pairs=[("layer1", "layer3")], options={"strict_shapes": True})
    with pytest.raises(TypeError, match=r"strict_shapes.* must be true or false"):
        _distiller(options={"strict_shapes": "yes"})
    with pytest.raises(ValueError, match=r"unknown distillation option\(s\) \['cwtt'\]"):
        _distiller(options={"cwtt": {"hidden_channels": 4}})


def test_shape_warning_and_strict_shapes_through_the_cli(tiny_config, capsys) -> None:
    cfg = tiny_config(base=BASE, distill={"pairs": [["layer1", "layer3"]]})
    with pytest.warns(UserWarning, match=r"differ 4x in height or width"):
        assert _cli(capsys, "train", cfg)[0] == 0
    code, err = _cli(
        capsys, "train", cfg, "--set", "distill.options.strict_shapes=true", "--set", "output.dir=x"
    )
    _one_line_error(code, err, "pair 'layer1' -> 'layer3'", "(distill.options.strict_shapes is set)")


# -- loss scale and untrained teachers -----------------------------------------------------------------
def test_loss_scale_warns_outside_1e_4_to_1000x_the_task_loss() -> None:
    d = _distiller(alpha=1.0)
    assert _warnings_of(lambda: d.warn_loss_scale({"ce": 2.0, "cwt:layer3": 7.0})) == []
    (high,) = _warnings_of(lambda: d.warn_loss_scale({"ce": 2.0, "cwt:layer3": 4e11}))
    assert high.startswith(
        "the first cwt:layer3 term is 4e+11, 2e+11x the task loss 2: it drowns the task loss"
    )
    assert "set distill.alpha: auto" in high
    (low,) = _warnings_of(lambda: d.warn_loss_scale({"ce": 2.0, "cwt:layer3": 1e-5}))
    assert "5e-06x the task loss 2: it is too small to have an effect" in low
    d.balancer.set({"cwt": 0.0})  # switched off on purpose
    assert _warnings_of(lambda: d.warn_loss_scale({"ce": 2.0, "cwt:layer3": 0.0})) == []


def test_loss_scale_and_untrained_teacher_through_the_cli(tiny_config, capsys) -> None:
    cfg = tiny_config(base=BASE)
    with pytest.warns(UserWarning) as caught:
        assert _cli(capsys, "train", cfg, "--set", "distill.alpha=1e6")[0] == 0
    messages = [str(w.message) for w in caught]
    assert any("x the task loss" in m and "drowns the task loss" in m for m in messages), messages
    assert any(m.startswith("the teacher is untrained: model.teacher 'resnet8'") for m in messages), messages


def test_a_teacher_with_weights_or_its_own_is_not_untrained(tiny_config, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "teacher.pt"
    torch.save(build_classifier("resnet8", 4).state_dict(), weights)
    cfg = tiny_config(base=BASE, model={"teacher_weights": str(weights)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cli(capsys, "train", cfg)[0] == 0
    assert not [w for w in caught if "untrained" in str(w.message)]


def test_an_hf_teacher_carries_its_own_weights(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from featdistill.run import build_teacher, get_task

    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
        patch_size=8, num_labels=4,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    cfg = parse_config({**BASE, "model": {**BASE["model"], "teacher": f"hf:{tmp_path / 'vit'}"}})
    found = _warnings_of(lambda: build_teacher(get_task(cfg)))
    assert not [m for m in found if "untrained" in m], found
    untrained = parse_config(BASE)
    assert any(
        "the teacher is untrained" in m for m in _warnings_of(lambda: build_teacher(get_task(untrained)))
    )
