"""``featdistill sweep``: lockstep equals separate runs, failures, bad grids, holdout-only selection, resume, shards."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import ConfigError, load_config
from featdistill.sweep.grid import expand, lockstep_groups, parse_grid, split_values
from tiny_data import image_folder

BASE = tiny_tree(data={"limit": 160, "batch_size": 32, "holdout": 32}, train={"epochs": 2})


SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _student(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=True)["student"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_grid_values_split_outside_brackets_and_keys_are_checked() -> None:
    assert split_values("[[a, b]],[[c, d], [e, f]]") == ["[[a, b]]", "[[c, d], [e, f]]"]
    assert parse_grid(["distill.alpha=1e-3,auto", "distill.options.cwt.hidden_channels=8,16"]) == {
        "distill.alpha": [1e-3, "auto"],
        "distill.options.cwt.hidden_channels": [8, 16],
    }
    with pytest.raises(ConfigError, match=r"did you mean 'distill\.alpha'"):
        parse_grid(["distill.alpah=1,2"])
    with pytest.raises(ConfigError, match="has no values"):
        parse_grid(["distill.alpha="])
    with pytest.raises(ConfigError, match="at least one --grid"):
        parse_grid([])


def test_lockstep_groups_share_data_and_teacher_only(tiny_config, tmp_path: Path) -> None:
    base = load_config(tiny_config(tmp_path / "g", base=BASE))
    grid = {"distill.alpha": [1e-3, 1e-2], "train.lr": [0.05, 0.1], "train.seed": [0, 1]}
    groups = lockstep_groups(expand(base, grid, tmp_path / "g"))
    assert [len(g) for g in groups] == [4, 4]  # the seed changes the batch order: two groups
    plain = lockstep_groups(expand(base, {"model.teacher": [None, "resnet8"]}, tmp_path / "p"))
    assert [len(g) for g in plain] == [1, 1]


def test_lockstep_variants_equal_their_own_runs(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sweep"
    cfg = tiny_config(out, base=BASE)
    assert main(["sweep", str(cfg), "--grid", "distill.alpha=1e-3,2e-2", "--grid", "train.lr=0.05,0.1"]) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in record["variants"]] == ["done"] * 4
    assert {r["group"] for r in record["variants"]} == {0}  # one lockstep group: one teacher forward a step
    for name, alpha, lr in (("v01_alpha=0.001_lr=0.1", 1e-3, 0.1), ("v02_alpha=0.02_lr=0.05", 2e-2, 0.05)):
        alone = tmp_path / f"alone_{alpha}"
        args = ["--set", f"distill.alpha={alpha}", "--set", f"train.lr={lr}", "--set", f"output.dir={alone}"]
        assert main(["train", str(cfg), *args]) == 0
        assert _same(_student(out / name), _student(alone)), name
    best = max(record["variants"], key=lambda r: r["metric"])
    assert record["best"]["name"] == best["name"]
    best_cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert best_cfg["data"]["holdout"] is None and best_cfg["output"]["dir"] == str(out / "refit")
    assert (out / "sweep.png").is_file()
    table = (out / "sweep.md").read_text()
    assert "**best**" in table and f"| {best['metric']:.2f} |" in table


def test_lockstep_students_with_dropout_equal_their_own_runs(tiny_config, tmp_path: Path) -> None:
    """Each trainer of a group draws its dropout masks from its own RNG stream, as in a run of its own."""
    out = tmp_path / "dropout"
    student = {"student": "mobilenet_v3_small"}  # torchvision's: Dropout(0.2) before its classifier
    cfg = tiny_config(out, base=BASE, model=student, train={"epochs": 1, "max_steps": 3})
    kd = ["--set", "distill.method=kd", "--set", "distill.pairs=[[output, output]]"]
    assert main(["sweep", str(cfg), *kd, "--grid", "distill.alpha=0.5,2.0"]) == 0
    for name, alpha in (("v00_alpha=0.5", 0.5), ("v01_alpha=2.0", 2.0)):
        alone = tmp_path / f"alone_{alpha}"
        sets = ["--set", f"distill.alpha={alpha}", "--set", f"output.dir={alone}"]
        assert main(["train", str(cfg), *kd, *sets]) == 0
        assert _same(_student(out / name), _student(alone)), name


def test_students_of_other_architectures_share_one_teacher_forward(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "archs"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    grid = ["--grid", "model.student=resnet8,resnet14", "--grid", "distill.method=cwt,fitnets"]
    assert main(["sweep", str(cfg), *grid]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert [r["status"] for r in rows] == ["done"] * 4 and {r["group"] for r in rows} == {0}
    resnet14 = torch.load(out / rows[2]["name"] / "last.pt", weights_only=True)["student"]
    assert "layer1.1.conv1.weight" in resnet14 and "layer1.1.conv1.weight" not in _student(
        out / rows[0]["name"]
    )


def test_a_diverging_variant_fails_alone(tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "diverge"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    assert main(["sweep", str(cfg), "--grid", "train.lr=0.05,1e12"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert rows[0]["status"] == "done" and rows[0]["metric"] is not None
    assert rows[1]["status"] == "failed" and "non-finite" in rows[1]["error"]
    assert json.loads((out / "sweep.json").read_text())["best"]["index"] == 0
    assert main(["sweep", str(cfg), "--grid", "train.lr=1e12,1e13", "--refit"]) == 2
    err = capsys.readouterr().err
    assert "--refit: no variant finished" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (["--grid", "distill.alpah=1e-3"], "did you mean 'distill.alpha'"),
        (["--grid", "distill.alpha="], "has no values"),
        (["--grid", "train.lr=fast,slow"], "config key 'train.lr' expects float"),
        (["--grid", "distill.alpha=1e-3", "--set", "data.holdout=500"], "holdout"),
        (["--grid", "distill.alpha=1e-3", "--set", "data.batch_size=200"], "no full training batch"),
    ],
)
def test_bad_sweeps_are_one_line(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture, grid: list[str], message: str
) -> None:
    cfg = tiny_config(tmp_path / "bad", base=BASE)
    assert main(["sweep", str(cfg), *grid]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def _folder(root: Path) -> Path:
    """An ImageFolder with only a train split: the test split does not exist at all."""
    g = torch.Generator().manual_seed(0)

    def pixels(label: int, i: int) -> np.ndarray:
        return (torch.rand(12, 12, 3, generator=g) * 100 + 120 * label).to(torch.uint8).numpy()

    return image_folder(root, {"train": 24}, ["class0", "class1"], pixels)


def test_selection_never_reads_the_test_split(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _folder(tmp_path / "images")
    out = tmp_path / "folder"
    data = {"name": "imagefolder", "root": str(root), "limit": None, "val_limit": None, "image_size": None}
    cfg = tiny_config(
        out, base=BASE, data={**data, "batch_size": 8, "holdout": 0.25}, model={"num_classes": 2}
    )
    assert main(["sweep", str(cfg), "--grid", "distill.alpha=1e-3,auto"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert all(r["status"] == "done" and 0 <= r["metric"] <= 100 for r in rows)
    capsys.readouterr()
    # Only the refit, after the choice, opens the test split (here: absent, so it says so).
    assert main(["sweep", str(cfg), "--grid", "distill.alpha=1e-3,auto", "--resume", "auto", "--refit"]) == 2
    assert "test" in capsys.readouterr().err


def test_shards_split_the_variants_and_report_them_together(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sharded"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    grid = ["--grid", "distill.alpha=1e-3,1e-2,auto"]
    assert main(["sweep", str(cfg), *grid, "--shard", "1/2"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert [r["status"] for r in rows] == ["not run", "done", "not run"]
    assert main(["sweep", str(cfg), *grid, "--shard", "0/2", "--resume", "auto"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert [r["status"] for r in rows] == ["done"] * 3
    whole = tmp_path / "whole"
    assert main(["sweep", str(tiny_config(whole, base=BASE, train={"epochs": 1})), *grid]) == 0
    unsharded = json.loads((whole / "sweep.json").read_text())["variants"]
    assert [r["metric"] for r in rows] == [r["metric"] for r in unsharded]


def test_refit_seeds_report_the_test_mean_std_and_interval(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "seeds"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    assert main(["sweep", str(cfg), "--grid", "distill.alpha=1e-3", "--refit-seeds", "3,4"]) == 0
    refit = json.loads((out / "sweep.json").read_text())["refit"]
    tops = [json.loads((out / f"refit-seed{s}" / "metrics.json").read_text())["top1"] for s in (3, 4)]
    assert [r["seed"] for r in refit["runs"]] == [3, 4]
    assert refit["mean"] == pytest.approx(sum(tops) / 2)
    assert refit["std"] == pytest.approx(abs(tops[0] - tops[1]) / 2**0.5)
    assert refit["ci95"] == pytest.approx(12.706 * refit["std"] / 2**0.5)
    assert "95 % interval" in (out / "sweep.md").read_text()
    only = json.loads((out / "sweep.json").read_text())["variants"][0]
    assert only["status"].startswith("only variant")  # nothing to choose: no holdout run was trained
    assert not (out / only["name"] / "last.pt").exists()


def test_resume_after_a_change_trains_again_what_it_changed(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "changed"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    grid = ["--grid", "distill.alpha=1e-3,1e-2", "--refit", "--resume", "auto"]
    assert main(["sweep", str(cfg), *grid]) == 0
    checkpoints = sorted(out.glob("*/last.pt"))
    assert len(checkpoints) == 3  # two variants and the refit
    written = {path: path.stat().st_mtime_ns for path in checkpoints}
    capsys.readouterr()
    # Nothing that changes the numbers changed (here: the loader's workers): every result and the refit are reused.
    assert main(["sweep", str(cfg), *grid, "--set", "data.workers=1"]) == 0
    assert "anew" not in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in checkpoints} == written
    # Another lr: the checkpoints in the folder no longer match, so everything trains again, as a fresh sweep.
    assert main(["sweep", str(cfg), *grid, "--set", "train.lr=0.1"]) == 0
    said = capsys.readouterr().out
    assert said.count("was trained with other settings; training it anew") == 2
    assert "holds a refit of other settings; refitting anew" in said
    fresh = tmp_path / "fresh"
    fresh_cfg = tiny_config(fresh, base=BASE, train={"epochs": 1, "lr": 0.1})
    assert main(["sweep", str(fresh_cfg), "--grid", "distill.alpha=1e-3,1e-2", "--refit"]) == 0
    got, expected = (json.loads((d / "sweep.json").read_text()) for d in (out, fresh))
    assert [r["metric"] for r in got["variants"]] == [r["metric"] for r in expected["variants"]]
    assert got["refit"]["runs"][0]["metrics"] == expected["refit"]["runs"][0]["metrics"]


def _launch(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "featdistill", "sweep", str(cfg), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=SUBPROCESS_ENV,
    )


def _steps(out: Path) -> int:
    total = 0
    for log in out.glob("v*/log.csv"):
        with contextlib.suppress(OSError):
            total += sum(1 for line in log.read_text().splitlines()[1:] if line)
    return total


@pytest.mark.slow
def test_sigkilled_sweep_resumes_to_the_same_numbers(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    grid = ["--grid", "distill.alpha=1e-3,auto", "--grid", "train.lr=0.05,0.1"]
    ref = tmp_path / "ref"
    settings = {"train": {"epochs": 2, "checkpoint_every": 1}}
    assert main(["sweep", str(tiny_config(ref, base=BASE, **settings)), *grid, "--refit"]) == 0
    out = tmp_path / "killed"
    cfg = tiny_config(out, base=BASE, **settings)
    rng = random.Random(7)
    for _ in range(3):
        proc = _launch(cfg, *grid, "--resume", "auto", "--refit")
        target = _steps(out) + rng.randint(2, 10)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _steps(out) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    proc = _launch(cfg, *grid, "--resume", "auto", "--refit")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    expected = json.loads((ref / "sweep.json").read_text())
    got = json.loads((out / "sweep.json").read_text())
    assert [r["metric"] for r in got["variants"]] == [r["metric"] for r in expected["variants"]]
    assert got["refit"]["runs"][0]["metrics"] == expected["refit"]["runs"][0]["metrics"]
    for row in expected["variants"]:
        assert _same(_student(out / row["name"]), _student(ref / row["name"])), row["name"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_sweep_and_alpha_auto_for_dense_tasks(
    task: str, tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / task
    if task == "segmentation":
        config = "configs/segmentation/camvid_cpu_cwt.yaml"
        settings = [
            f"data.root={shared_data / 'camvid'}",
            "data.limit=6",
            "data.holdout=2",
            "data.batch_size=2",
            "data.in_memory=false",
            "data.options.crop_size=64",
            "model.teacher_weights=null",
            "model.options.teacher.backbone=resnet18",
        ]
    else:
        pytest.importorskip("pycocotools")
        config = "configs/detection/coco128_cpu_faster_rcnn_cwt.yaml"
        settings = [
            f"data.root={shared_data / 'coco128'}",
            "data.limit=4",
            "data.holdout=2",
            "data.batch_size=1",
        ]
        settings += ["model.teacher_weights=null", "train.lr=0.001"]
    settings += ["train.epochs=1", "output.progress=false", f"output.dir={out}"]
    args = [arg for item in settings for arg in ("--set", item)]
    repo = Path(__file__).resolve().parents[1]
    assert main(["sweep", str(repo / config), *args, "--grid", "distill.alpha=auto,1e-6"]) == 0
    assert "alpha auto chose cwt=" in capsys.readouterr().out
    record = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in record["variants"]] == ["done", "done"]
    assert record["metric"] == ("holdout miou" if task == "segmentation" else "holdout bbox/AP")
    assert json.loads((out / record["variants"][0]["name"] / "metrics.json").read_text())["alpha"]["cwt"] > 0


def test_a_variant_that_cannot_start_fails_alone(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import featdistill as fd

    real = fd.LossBalancer.calibrate

    def zero_loss(self, measured):  # as if the distillation loss were 0 on the first batches
        return real(self, {**measured, "cwt": 0.0})

    monkeypatch.setattr(fd.LossBalancer, "calibrate", zero_loss)
    out = tmp_path / "start"
    cfg = tiny_config(out, base=BASE, train={"epochs": 1})
    assert main(["sweep", str(cfg), "--grid", "distill.alpha=auto,1e-3"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["variants"]
    assert rows[0]["status"] == "failed" and "cannot be calibrated" in rows[0]["error"]
    assert rows[1]["status"] == "done" and rows[1]["metric"] is not None


def test_a_sweep_validates_each_variant_once(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config, its default holdout, each variant and best.yaml are each validated once; nothing re-parses."""
    import featdistill.config.schema as config_module  # where RunConfig.with_overrides finds it
    from featdistill.sweep import run_sweep

    calls = []
    real = config_module.parse_config
    monkeypatch.setattr(config_module, "parse_config", lambda tree: calls.append(1) or real(tree))
    out = tmp_path / "once"
    cfg = tiny_config(out, base=BASE, data={"holdout": None}, train={"max_steps": 1})
    run_sweep(cfg, ["distill.alpha=1e-3,2e-2", "train.lr=0.05,0.1"], progress=False)
    assert len(calls) == 1 + 1 + 4 + 1
