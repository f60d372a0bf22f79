"""``model.teachers`` on the command line: schema checks, training, ``layers``, single-teacher fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import ConfigError, parse_config
from featdistill.run import fingerprint

TEACHERS = {"cnn": {"model": "resnet14"}, "wide": {"model": "wrn_16_1", "options": {}}}
BASE = tiny_tree(  # two steps; the teachers are the test's
    data={"limit": 16, "val_limit": 8, "batch_size": 8},
    model={"teacher": None, "num_classes": 10},
    distill={"alpha": "auto", "auto_batches": 1},
    train={"max_steps": 2},
)


def test_two_teachers_train_from_the_cli_and_layers_lists_each(tiny_config, tmp_path: Path, capsys) -> None:
    cfg = tiny_config(base=BASE, model={"teachers": TEACHERS})
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    state = torch.load(run / "last.pt", weights_only=True)
    assert all(not k.startswith(("teacher", "cnn", "wide")) for k in state["student"])
    assert set(state["balancer"]["alpha"]) == {"cnn:cwt", "wide:cwt"}  # alpha auto: one per teacher's term
    assert (run / "config.yaml").read_text().startswith("# distill.alpha auto chose {cnn:cwt: ")
    capsys.readouterr()
    assert main(["layers", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "teacher 'cnn': resnet14 (CifarResNet)" in out
    assert "teacher 'wide': wrn_16_1 (WideResNet)" in out
    assert "layer3->cnn:layer3 [cwt]" in out and "->wide:" in out


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ({"teacher": "resnet14", "teachers": TEACHERS}, "model.teacher and model.teachers are both set"),
        (
            {"teachers": {"cnn": {"model": "resnet14", "weight": "t.pt"}}},
            "did you mean 'model.teachers.cnn.weights'",
        ),
        (
            {"teachers": {"cnn": {"weights": "t.pt"}}},
            "missing required config key 'model.teachers.cnn.model'",
        ),
        ({"teachers": {"cnn": "resnet14"}}, "'model.teachers.cnn' must be a mapping"),
        ({"teachers": {"cnn": {"model": 14}}}, "config key 'model.teachers.cnn.model' expects str"),
    ],
)
def test_teachers_entries_are_checked_key_by_key(model, error) -> None:
    tree = {"data": {"name": "synthetic", "root": "unused"}, "model": {"student": "resnet8", **model}}
    with pytest.raises(ConfigError, match=error):
        parse_config(tree)


def test_single_teacher_configs_and_fingerprints_are_unchanged() -> None:
    """The hash was computed by the code before ``model.teachers`` existed: old checkpoints still resume."""
    cfg = parse_config(
        {
            "data": {"name": "synthetic", "root": "unused"},
            "model": {"student": "resnet8", "teacher": "resnet14", "teacher_weights": "t.pt"},
            "distill": {"alpha": "auto"},
        }
    )
    assert fingerprint(cfg) == "5e7d289d826a70ca"
    assert "teachers" not in cfg.to_dict()["model"]
