"""Format versions: the card, the checkpoint and the distillation state name theirs, and a checkpoint written by an
older featdistill still loads, resumes and runs.

``fixtures/ccfa236_regression_last.pt`` (27 kB) was written by featdistill at commit ccfa236 (main before the
module moves of issue #30), from ``fixtures/ccfa236_regression.yaml`` (the plug-in task of
``tests/plugins/fd_example_plugin.py``, CWT with ``alpha: auto``), with::

    PYTHONPATH=<ccfa236>/src:<ccfa236>/tests/plugins python -m featdistill train tests/fixtures/ccfa236_regression.yaml
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from featdistill.card import CARD_FORMAT, read_card
from featdistill.config import load_config
from featdistill.distiller.distiller import DISTILL_STATE_FORMAT
from featdistill.engine.checkpoint import CHECKPOINT_FORMAT, load_safely
from featdistill.predict.student import load_student
from featdistill.run import build_trainer

FIXTURES = Path(__file__).parent / "fixtures"
OLD = FIXTURES / "ccfa236_regression_last.pt"


@pytest.fixture(autouse=True)
def _plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))


def _config(out: Path, epochs: int) -> object:
    return load_config(FIXTURES / "ccfa236_regression.yaml", [f"output.dir={out}", f"train.epochs={epochs}"])


def test_an_old_checkpoint_names_the_formats_this_version_reads() -> None:
    state = load_safely(OLD)
    assert state["format"] == CHECKPOINT_FORMAT and state["card"]["format"] == CARD_FORMAT
    assert read_card(OLD)["task"] == "regression"


def test_a_checkpoint_of_ccfa236_rebuilds_its_student(tmp_path: Path) -> None:
    task, student, card = load_student(OLD)
    assert card["source"] == "checkpoint" and card["distillation"]["method"] == "cwt"
    saved = load_safely(OLD)["student"]
    for key, value in student.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert task.name == "regression"


def test_a_checkpoint_of_ccfa236_resumes_with_its_transforms_and_alpha(tmp_path: Path) -> None:
    saved = load_safely(OLD)
    trainer = build_trainer(_config(tmp_path / "run", epochs=2))
    trainer.load_checkpoint(OLD)
    distiller = trainer.core
    assert distiller.balancer.state_dict() == saved["balancer"]  # alpha: auto is not calibrated again
    for key, value in distiller.transforms.state_dict().items():
        assert torch.equal(value, saved["transforms"][key]), key
    assert (trainer.epoch, trainer.step) == (saved["epoch"], saved["step"])
    metrics = build_trainer(_config(tmp_path / "again", epochs=2)).fit(resume=OLD)  # and trains on
    assert math.isfinite(metrics["neg_mse"])


def test_the_distillation_state_names_its_format_and_an_older_one_without_it_loads(tmp_path: Path) -> None:
    trainer = build_trainer(_config(tmp_path / "run", epochs=1))
    distiller = trainer.core
    distiller.balancer.calibrate({"task": 1.0, "cwt": 2.0})
    state = distiller.distill_state_dict()
    assert state["format"] == DISTILL_STATE_FORMAT and set(state) == {
        "format",
        "transforms",
        "criteria",
        "balancer",
    }
    older = {
        k: v for k, v in state.items() if k not in ("format", "criteria")
    }  # before formats and loss modules
    distiller.load_distill_state_dict(older)
    assert distiller.balancer.state_dict() == state["balancer"]
    with pytest.raises(ValueError, match="featdistill-distill-state-9"):
        distiller.load_distill_state_dict({**state, "format": "featdistill-distill-state-9"})
