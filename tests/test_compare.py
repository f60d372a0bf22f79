"""``featdistill compare``: every arm x seed trained on the whole training split and tested, no selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.sweep.stats import mean_interval, welch_t

BASE = tiny_tree(data={"limit": 128, "batch_size": 32, "holdout": 32})  # compare ignores holdout


pytestmark = pytest.mark.usefixtures("one_thread")


def test_compare_trains_every_arm_and_seed_and_equals_separate_runs(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cmp"
    cfg = tiny_config(out, base=BASE)
    args = ["compare", str(cfg), "--grid", "model.teacher=null,resnet8", "--seeds", "0,1"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "data.holdout is ignored" in said
    record = json.loads((out / "compare.json").read_text())
    assert [arm["values"] for arm in record["arms"]] == [
        {"model.teacher": None},
        {"model.teacher": "resnet8"},
    ]
    for arm in record["arms"]:
        assert [r["status"] for r in arm["runs"]] == ["done", "done"]
        values = [r["metric"] for r in arm["runs"]]
        assert arm["summary"] == mean_interval(values)
        for run in arm["runs"]:  # the metric each run's own folder reports
            assert json.loads((Path(run["dir"]) / "metrics.json").read_text())["top1"] == run["metric"]
    plain, distilled = (arm["summary"] for arm in record["arms"])
    assert record["arms"][1]["delta"] == pytest.approx(distilled["mean"] - plain["mean"])
    t = record["arms"][1]["welch_t"]
    assert math.isnan(t) or t == pytest.approx(welch_t(distilled, plain))
    table = (out / "compare.md").read_text()
    assert table.count("| done |") == 2 and "Welch t" in table
    assert (out / "compare.png").is_file()

    # A distilled run of the comparison equals the same config trained alone on the whole training split.
    alone = tmp_path / "alone"
    sets = ["--set", "data.holdout=null", "--set", "train.seed=1", "--set", f"output.dir={alone}"]
    assert main(["train", str(cfg), *sets]) == 0
    run = record["arms"][1]["runs"][1]
    theirs = torch.load(Path(run["dir"]) / "last.pt", weights_only=True)["student"]
    mine = torch.load(alone / "last.pt", weights_only=True)["student"]
    assert theirs.keys() == mine.keys() and all(torch.equal(theirs[k], mine[k]) for k in theirs)

    # A resumed comparison reuses every finished run and writes the same table.
    capsys.readouterr()
    assert main([*args, "--resume", "auto"]) == 0
    assert " in lockstep\n" not in capsys.readouterr().out  # no group trained again
    assert json.loads((out / "compare.json").read_text()) == record


def test_compare_refuses_seed_and_holdout_grids(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(tmp_path / "bad", base=BASE)
    assert main(["compare", str(cfg), "--grid", "train.seed=0,1"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", str(cfg), "--grid", "data.holdout=8,16"]) == 2
    assert "whole training split" in capsys.readouterr().err
    assert main(["compare", str(cfg), "--seeds", "0,x"]) == 2
    assert "--seeds expects integers" in capsys.readouterr().err
