"""A method given as an object in a pair (Python only): a loss module, as ModelOpt takes one per pair, or a
``Method`` record with its own transform."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import featdistill as fd
from conftest import REPO
from featdistill.config import parse_config
from featdistill.engine import Trainer
from featdistill.run import build_trainer
from tiny_models import small_cnn

X = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))


class CosineLoss(nn.Module):
    """1 − cosine similarity of the projected student map and the teacher map, per sample, averaged."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(student_channels, teacher_channels, 1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(self.project(student).flatten(1), teacher.flatten(1))).mean()


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return small_cnn(4), small_cnn(8).eval()  # taps "5": 8 and 16 channels at 4x4


def _ce(output: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(output, batch[1])


def test_a_loss_module_in_a_pair_trains_with_the_student() -> None:
    student, teacher = _models()
    cosine = CosineLoss(8, 16)
    d = fd.Distiller(student, teacher, pairs=[("5", "5", cosine)], alpha=1.0, sample_input=X[:2])
    assert d.alpha == {"CosineLoss": 1.0} and d.criteria["CosineLoss"] is cosine
    assert {id(p) for p in cosine.parameters()} <= {id(p) for p in d.parameters()}
    assert any(key.startswith("criteria.CosineLoss.") for key in d.state_dict())
    before = cosine.project.weight.detach().clone()
    optimizer = torch.optim.SGD(d.parameters(), lr=0.5)
    losses = []
    for _ in range(15):
        out = d(X)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert list(out.losses) == ["CosineLoss:5"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(before, cosine.project.weight)


def test_alpha_auto_calibrates_a_loss_module_keyed_by_its_name() -> None:
    student, teacher = _models()
    cosine = CosineLoss(8, 16)
    cosine.name = "cosine_module"
    d = fd.Distiller(
        student,
        teacher,
        pairs=[("5", "5", cosine), ("2", "2")],
        alpha={"cosine_module": "auto", "cwt": 1e-3},
        auto_ratio=2.0,
        sample_input=X[:2],
    )
    assert d.balancer.uncalibrated == ["cosine_module"]
    measured = d.measure_losses([(X, Y)], _ce)
    chosen = d.calibrate_alpha([(X, Y)], _ce)
    assert chosen == {
        "cosine_module": pytest.approx(2.0 * measured["task"] / measured["cosine_module"], rel=1e-5)
    }
    assert d.alpha["cwt"] == 1e-3


def test_a_method_record_brings_its_own_transform() -> None:
    student, teacher = _models()
    linear = fd.Method(
        "projected_mse", fd.METHODS["cwt_linear"].build_transform, lambda s, t, o: (s - t).pow(2).mean(), 0.5
    )
    d = fd.Distiller(
        student, teacher, pairs=[{"student": "5", "teacher": "5", "method": linear}], sample_input=X[:2]
    )
    assert d.alpha == {"projected_mse": 0.5} and isinstance(d.transforms[0], fd.ChannelWiseTransform)
    assert "projected_mse" not in fd.METHODS and len(d.criteria) == 0  # not registered, nothing extra to save
    d.eval()
    with torch.no_grad():
        expected = 0.5 * (d.transforms[0](student[:6](X), (4, 4)) - teacher[:6](X)).pow(2).mean()
        torch.testing.assert_close(d(X).loss, expected)


class _PerSample(nn.Module):
    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return student.flatten(1).sum(1)


def test_method_objects_that_cannot_work_are_refused() -> None:
    student, teacher = _models()

    def make(*pairs: tuple) -> fd.Distiller:
        return fd.Distiller(student, teacher, pairs=list(pairs), alpha=1.0, sample_input=X[:2])

    with pytest.raises(ValueError, match="two different method objects are named 'CosineLoss'"):
        make(("5", "5", CosineLoss(8, 16)), ("2", "2", CosineLoss(4, 8)))
    same = CosineLoss(8, 16)
    assert len(make(("5", "5", same), ("2", "2", same)).criteria) == 1  # one object, one α
    taken = CosineLoss(8, 16)
    taken.name = "cwt"
    with pytest.raises(ValueError, match="method object 'cwt' has the name of a registered method"):
        make(("5", "5", taken))
    spaced = CosineLoss(8, 16)
    spaced.name = "my loss"
    with pytest.raises(ValueError, match="method object name 'my loss' must be an identifier"):
        make(("5", "5", spaced))
    spaced.name = "cosine_module"
    with pytest.raises(ValueError, match=r"\['cosine_module'\] name both a teacher and a method"):
        fd.Distiller(
            student,
            teachers={"cosine_module": teacher},
            pairs=[("5", "cosine_module:5", spaced)],
            sample_input=X[:2],
        )
    with pytest.raises(TypeError, match=r"got a function .*wrap a function in an nn\.Module"):
        make(("5", "5", lambda s, t: (s - t).pow(2).mean()))
    vector = make(("2", "2", _PerSample()))
    with pytest.raises(
        ValueError, match=r"loss of method '_PerSample' on pair '2' -> '2' returned \(8,\), not a scalar"
    ):
        vector(X)


def test_a_loss_modules_weights_and_alpha_survive_the_trainer_checkpoint(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "device": "cpu",
            "data": {"name": "synthetic", "root": "unused", "limit": 16, "val_limit": 8, "image_size": 16},
            "model": {"student": "resnet8", "teacher": "resnet8", "num_classes": 4},
            "distill": {"method": "cwt", "pairs": [["layer2", "layer2"]], "alpha": "auto", "auto_batches": 1},
            "train": {"lr": 0.05, "log_every": 1},
            "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
        }
    )
    cfg.data.batch_size = 8
    built = build_trainer(cfg)
    task, core = built.task, built.core
    channels = core.teacher_features(task.sample_input())["layer2"].shape[1]

    def trainer() -> Trainer:
        model = fd.Distiller(
            core.student,
            core.teacher,
            pairs=[("layer2", "layer2", CosineLoss(channels, channels))],
            alpha="auto",
            sample_input=task.sample_input(),
            teacher_forward=task.teacher_forward,
        )
        return Trainer(model, task, built.train_loader, None, cfg, torch.device("cpu"), card=built.card)

    first = trainer()
    first.begin()  # calibrates the loss module's α
    first.train_loader.set_epoch(0)
    first.train_step(next(iter(first.train_loader.iterate())))
    path = first.save_checkpoint()
    card = first.state()["card"]["distillation"]
    assert card["pairs"] == [["layer2", "layer2", "CosineLoss"]]  # the card records the object's name
    assert card["alpha"] == dict(first.core.alpha) and first.core.alpha["CosineLoss"] > 0

    second = trainer()  # a fresh loss module, α not calibrated
    second.load_checkpoint(path)
    assert second.core.balancer.state_dict() == first.core.balancer.state_dict()
    saved = first.core.criteria.state_dict()
    for key, value in second.core.criteria.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_the_readme_example_of_a_loss_module_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if "class CosineLoss" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    d = namespace["d"]
    assert set(d.alpha) == {"CosineLoss"} and d.alpha["CosineLoss"] > 0
    assert list(namespace["out"].losses) == ["CosineLoss:layer3"] and namespace["loss"].dim() == 0
