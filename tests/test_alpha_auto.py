"""``alpha: auto``: α from the measured task / distillation loss ratio, recorded, reused on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import featdistill as fd
from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.engine import load_safely


def _nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 5)
    )
    teacher = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 64, 5)
    )
    return student, teacher


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(n)]


def _ce(output: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(output, batch[1])


def _cwt_auto_kd(**kwargs: object) -> fd.Distiller:
    student, teacher = _nets()
    return fd.Distiller(
        student,
        teacher,
        pairs=[("2", "2", "cwt"), ("4", "4", "kd")],
        alpha={"cwt": "auto", "kd": 0.5},
        sample_input=torch.randn(2, 3, 8, 8),
        **kwargs,
    )


def test_calibrated_alpha_is_ratio_times_task_over_method_loss() -> None:
    d = _cwt_auto_kd(auto_ratio=2.0)
    assert d.balancer.uncalibrated == ["cwt"] and d.balancer.ratios == {"cwt": 2.0}
    with pytest.raises(RuntimeError, match="not calibrated"):
        d(torch.randn(2, 3, 8, 8))
    batches = _batches()
    # the expected value, computed by hand with alpha 1 on the same batches
    measured = d.measure_losses(batches, _ce)
    by_hand = _cwt_auto_kd()
    by_hand.balancer.set({"cwt": 1.0})
    raw = []
    task = []
    with torch.no_grad():
        for x, y in batches:
            out = by_hand.train()(x)
            raw.append(float(out.losses["cwt:2"]))
            task.append(float(F.cross_entropy(out.student, y)))
    assert measured["cwt"] == pytest.approx(sum(raw) / len(raw), rel=1e-5)
    assert measured["task"] == pytest.approx(sum(task) / len(task), rel=1e-5)
    chosen = d.calibrate_alpha(batches, _ce)
    assert chosen == {"cwt": pytest.approx(2.0 * measured["task"] / measured["cwt"], rel=1e-5)}
    assert d.alpha["kd"] == 0.5  # a given alpha is kept
    assert d.balancer.chosen() == chosen and d.balancer.measured == pytest.approx(measured)
    assert d.balancer.describe().startswith(f"cwt={chosen['cwt']:.4g} (cwt loss ")
    # default ratio: the method table's
    default = _cwt_auto_kd()
    assert default.calibrate_alpha(batches, _ce)["cwt"] == pytest.approx(
        fd.METHODS["cwt"].auto_ratio * measured["task"] / measured["cwt"], rel=1e-5
    )


def test_the_balancer_state_round_trips_as_json_and_refuses_another_distillers() -> None:
    d = _cwt_auto_kd(auto_ratio=3.0)
    d.calibrate_alpha(_batches(1), _ce)
    state = json.loads(json.dumps(d.balancer.state_dict()))  # plain JSON data
    assert (
        state["auto"] == ["cwt"]
        and state["ratios"] == {"cwt": 3.0}
        and set(state["measured"])
        == {
            "task",
            "cwt",
            "kd",
        }
    )
    fresh = _cwt_auto_kd()  # another ratio configured: the saved state wins, nothing to calibrate
    fresh.balancer.load_state_dict(state)
    assert fresh.balancer.state_dict() == d.balancer.state_dict() and fresh.balancer.uncalibrated == []
    with pytest.raises(TypeError, match="alpha of method 'cwt' must be a number or 'auto'"):
        fresh.balancer.load_state_dict({**state, "alpha": {"cwt": None, "kd": 0.5}, "auto": []})
    student, teacher = _nets()
    other = fd.Distiller(
        student, teacher, pairs=[("2", "2")], alpha=1.0, sample_input=torch.randn(2, 3, 8, 8)
    )
    with pytest.raises(
        ValueError, match=r"the saved alpha is for \['cwt', 'kd'\], this distiller's for \['cwt'\]"
    ):
        other.balancer.load_state_dict(state)
    with pytest.raises(TypeError, match="does not support item assignment"):
        d.alpha["cwt"] = 1.0  # type: ignore[index]  # read-only: set α through the balancer


def test_measuring_changes_neither_batchnorm_statistics_nor_random_state() -> None:
    student, teacher = _nets()
    d = fd.Distiller(student, teacher, pairs=[("2", "2")], alpha="auto", sample_input=torch.randn(2, 3, 8, 8))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rng = torch.get_rng_state()
    d.eval()
    d.calibrate_alpha(_batches(), _ce)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert not d.training  # the mode is restored too


def test_forward_with_precomputed_teacher_features_is_the_same() -> None:
    student, teacher = _nets()
    d = fd.Distiller(student, teacher, pairs=[("2", "2")], alpha=1e-2, sample_input=torch.randn(2, 3, 8, 8))
    x = torch.randn(4, 3, 8, 8)
    plain = d(x)
    shared = d(x, teacher_features=d.teacher_features(x))
    assert torch.equal(plain.loss, shared.loss)


def _config(tmp_path: Path, out: Path, **distill: object) -> Path:
    data = {"limit": 128, "batch_size": 32}
    tree = tiny_tree(out, data=data, distill={"alpha": "auto", **distill}, train={"epochs": 2})
    return write_yaml(tmp_path / f"{out.name}.yaml", tree)


def test_cli_records_the_calibrated_alpha_and_resume_reuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    cfg = _config(tmp_path, out, auto_ratio=3.0)
    assert main(["train", str(cfg), "--set", "train.max_steps=4"]) == 0
    printed = capsys.readouterr().out
    assert "alpha auto chose cwt=" in printed and "ratio 3)" in printed
    alpha = json.loads((out / "metrics.json").read_text())["alpha"]["cwt"]
    assert alpha > 0
    saved = load_safely(out / "last.pt")["balancer"]
    assert saved["alpha"] == {"cwt": alpha} and saved["auto"] == ["cwt"] and saved["ratios"] == {"cwt": 3.0}
    assert f"cwt: {alpha:.6g}" in (out / "config.yaml").read_text().splitlines()[0]
    assert yaml.safe_load((out / "config.yaml").read_text())["distill"]["alpha"] == "auto"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resume must not re-calibrate alpha")

    monkeypatch.setattr(fd.Distiller, "measure_losses", refuse)
    assert main(["train", str(cfg), "--resume", "auto"]) == 0
    assert json.loads((out / "metrics.json").read_text())["alpha"]["cwt"] == alpha
    resumed = load_safely(out / "last.pt")
    assert resumed["step"] == 8 and resumed["balancer"] == saved  # the measured losses kept too


def test_a_checkpoint_that_kept_alpha_alone_still_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "old"
    cfg = _config(tmp_path, out)
    assert main(["train", str(cfg), "--set", "train.max_steps=4"]) == 0
    state = load_safely(out / "last.pt")
    state.pop("balancer")
    state["alpha"] = {"cwt": 0.125}  # how checkpoints held alpha before the balancer
    torch.save(state, out / "last.pt")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resume must not re-calibrate alpha")

    monkeypatch.setattr(fd.Distiller, "measure_losses", refuse)
    assert main(["train", str(cfg), "--resume", "auto"]) == 0
    assert json.loads((out / "metrics.json").read_text())["alpha"] == {"cwt": 0.125}
    assert load_safely(out / "last.pt")["balancer"]["alpha"] == {"cwt": 0.125}


def test_a_zero_distillation_loss_cannot_be_calibrated() -> None:
    student, teacher = _nets()
    d = fd.Distiller(student, teacher, pairs=[("2", "2")], alpha="auto", sample_input=torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="cannot be calibrated for method 'cwt'"):
        d.balancer.calibrate({"task": 2.3, "cwt": 0.0})
    assert d.balancer.uncalibrated == ["cwt"]  # nothing was set
