"""``featdistill compare``: every arm x seed trained on the whole training split and tested, no selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

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
    assert ": group " not in capsys.readouterr().out  # no group trained again
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
    tree = yaml.safe_load(cfg.read_text())
    tree["compare"] = {"arms": {"slow": {"train.lr_max": 0.1}}}
    cfg.write_text(yaml.safe_dump(tree))
    assert main(["compare", str(cfg)]) == 2
    assert "compare.arms.slow: unknown config key 'train.lr_max'" in capsys.readouterr().err


def test_compare_arms_and_seeds_from_the_config(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``compare.arms`` (named sets of keys) crossed with ``--grid``; ``compare.seeds`` when --seeds is absent."""
    out = tmp_path / "arms"
    arms = {
        "plain": {"model.teacher": None},
        "cwt": {},
        "cwt_lr": {"train.lr": 0.02},
    }  # the first: the reference
    path = tiny_config(out, base=BASE, train={"max_steps": 2}, compare={"seeds": [3], "arms": arms})
    assert main(["compare", str(path), "--grid", "distill.alpha=1e-3"]) == 0
    said = capsys.readouterr().out
    assert "3 arm(s) x 1 seed(s) in 2 lockstep group(s)" in said  # cwt and cwt_lr share data and teacher
    record = json.loads((out / "compare.json").read_text())
    assert record["grid"] == ["arm", "distill.alpha"]
    assert [(a["values"]["arm"], a["set"]) for a in record["arms"]] == [
        ("plain", {"model.teacher": None}),
        ("cwt", {}),
        ("cwt_lr", {"train.lr": 0.02}),
    ]
    runs = [arm["runs"][0] for arm in record["arms"]]
    assert [r["seed"] for r in runs] == [3, 3, 3] and all(r["status"] == "done" for r in runs)
    saved = [yaml.safe_load((Path(r["dir"]) / "config.yaml").read_text()) for r in runs]
    assert "arm=plain" in runs[0]["dir"] and saved[0]["model"]["teacher"] is None
    assert saved[1]["model"]["teacher"] == "resnet8" and saved[2]["train"]["lr"] == 0.02
    assert all("compare" not in s and s["train"]["seed"] == 3 for s in saved)  # a run is a plain config
    assert "| plain |" in (out / "compare.md").read_text()
