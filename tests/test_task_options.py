"""Each task's data.options / model.options are a typed schema: unknown keys name the closest valid one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import ConfigError, parse_config
from featdistill.run import get_task


def config(task: str, data_options: dict | None = None, model_options: dict | None = None) -> dict:
    """The tiny ``task`` config with these options alone (11 classes: CamVid's)."""
    data = {"root": "unused", "options": data_options or {}}
    return tiny_tree(
        task=task, data=data, model={"num_classes": 11, "options": model_options or {}}, alone=True
    )


@pytest.mark.parametrize(
    ("task", "data_options", "model_options", "message"),
    [
        (
            "classification",
            {"cach_dir": "cache"},
            None,
            "unknown config key 'data.options.cach_dir'; did you mean 'data.options.cache_dir'?",
        ),
        ("classification", {"pad": "four"}, None, "config key 'data.options.pad' expects int or null"),
        ("classification", {"mean": [0.5, 0.5, 0.5]}, None, "data.options.mean is set alone"),
        ("segmentation", {"eval_mode": "slid"}, None, "'data.options.eval_mode' expects 'whole' or 'slide'"),
        ("segmentation", None, {"channls": 64}, "did you mean 'model.options.channels'?"),
        (
            "segmentation",
            None,
            {"teacher": {"backbon": "resnet50"}},
            "did you mean 'model.options.teacher.backbone'?",
        ),
    ],
)
def test_options_are_checked_by_the_task_schema(task, data_options, model_options, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_task(parse_config(config(task, data_options, model_options)))


def test_valid_options_reach_the_task_with_defaults_filled() -> None:
    task = get_task(parse_config(config("classification", {"pad": 2})))
    assert (task.options.pad, task.options.cache_dir, task.options.mean) == (2, None, None)
    task = get_task(parse_config(config("segmentation", {"crop_size": [32, 48]}, {"channels": 16})))
    assert (task.crop, task.window, task.options.scale_range) == ((32, 48), (32, 48), [0.5, 2.0])


def test_cli_refuses_an_options_typo_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config("classification", {"cach_dir": "cache"})))
    assert main(["data", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featdistill: error: unknown config key 'data.options.cach_dir'; did you mean")
    assert err.count("\n") == 0
