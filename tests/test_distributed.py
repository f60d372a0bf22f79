"""Multi-process training: 2 Gloo processes on CPU follow the 1-process trajectory; DDP around a Distiller."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn

import featdistill as fd
from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.engine import load_safely
from featdistill.engine.distributed import DistributedContext, init_distributed, sync_batchnorm

# Runs the real CLI under torchrun, recording every checkpoint write with the rank that made it.
LAUNCHER = textwrap.dedent(
    """
    import os, sys
    import featdistill.engine.trainer as trainer
    from featdistill.cli.main import main

    save = trainer.save_atomic

    def recording_save(obj, path):
        with open(os.path.join(sys.argv[1], "saves-rank" + os.environ["RANK"]), "a") as f:
            f.write(str(path) + "\\n")
        return save(obj, path)

    trainer.save_atomic = recording_save
    sys.exit(main(sys.argv[2:]))
    """
)


def _config(tmp_path: Path) -> Path:
    # The student has no BatchNorm (SqueezeNet 1.1; dropout 0 so that no random mask differs between
    # ranks): BatchNorm would normalise each process's half batch with its own statistics, and
    # SyncBatchNorm does not run on CPU. The teacher is in eval mode, so its BatchNorm-free-ness is moot.
    tree = tiny_tree(
        drop=["data.batch_size"],
        data={"limit": 128, "val_limit": 64, "image_size": 32},
        model={
            "student": "squeezenet1_1",
            "teacher": "squeezenet1_0",
            "num_classes": 10,
            "options": {"dropout": 0.0},
        },
        distill={"pairs": [["features.7", "features.10"]], "alpha": 1e-4},
        train={"epochs": 2, "lr": 0.01},
    )
    return write_yaml(tmp_path / "config.yaml", tree)


def _train_losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "log.csv", newline="") as f:
        return [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r["train/loss"]]


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # like each torchrun worker (OMP_NUM_THREADS=1); faster on a busy CPU
    config = _config(tmp_path)
    global_batch = 32
    single, double = tmp_path / "one", tmp_path / "two"
    assert (
        main(
            [
                "train",
                str(config),
                "--set",
                f"data.batch_size={global_batch}",
                "--set",
                f"output.dir={single}",
            ]
        )
        == 0
    )

    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(launcher),
        str(tmp_path),
        "train",
        str(config),
        "--set",
        f"data.batch_size={global_batch // 2}",  # per process: 2 x 16 = the same global batch of 32
        "--set",
        f"output.dir={double}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    # Same global batches, gradients averaged by DDP: the logged (rank-averaged) loss matches step by step.
    # Tolerance 1e-4 relative: only float summation order differs (observed ~1e-7 over 8 SGD steps).
    one, two = _train_losses(single), _train_losses(double)
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, 9))
    torch.testing.assert_close([v for _, v in two], [v for _, v in one], rtol=1e-4, atol=0.0)

    # Only rank 0 wrote checkpoints (2 epochs, each saved before and after its evaluation), and the
    # checkpoint looks exactly like a single-process one.
    assert (tmp_path / "saves-rank0").read_text().splitlines() == [str(double / "last.pt")] * 4
    assert not (tmp_path / "saves-rank1").exists()
    a, b = load_safely(single / "last.pt"), load_safely(double / "last.pt")
    assert a.keys() == b.keys()
    for part in ("student", "transforms"):
        assert list(a[part]) == list(b[part])
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=1e-3, atol=1e-5)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert yaml.safe_load((double / "metrics.json").read_text()) == pytest.approx(
        yaml.safe_load((single / "metrics.json").read_text()), rel=1e-4
    )


def _cnn(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 5),
    )


@pytest.fixture
def process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["cwt", "fitnets", "mgd", "cwd", "at", "kd"])
def test_ddp_distiller_has_no_unused_parameters(process_group, method: str) -> None:
    # DDP without find_unused_parameters fails in the second step if any parameter got no gradient.
    student, teacher = _cnn(4), _cnn(8)
    pair = ("7", "7") if method == "kd" else ("4", "4")
    distiller = fd.Distiller(
        student, teacher, pairs=[pair], method=method, sample_input=torch.randn(2, 3, 8, 8)
    )
    ddp = nn.parallel.DistributedDataParallel(distiller)
    assert {id(p) for p in ddp.parameters()}.isdisjoint(id(p) for p in teacher.parameters())
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
    for _ in range(3):
        out = ddp(torch.randn(4, 3, 8, 8))
        loss = nn.functional.cross_entropy(out.student, torch.tensor([0, 1, 2, 3])) + out.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())


def test_single_process_needs_no_process_group(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.world_size, ctx.rank, ctx.is_main, ctx.is_distributed) == (1, 0, True, False)
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="start the processes with torchrun"):
        init_distributed("cpu")


def test_sync_bn_is_a_clear_error_on_cpu() -> None:
    student = _cnn(4)
    assert sync_batchnorm(student, DistributedContext()) is student  # one process: nothing to sync
    with pytest.raises(ValueError, match=r"train\.sync_bn needs GPUs"):
        sync_batchnorm(student, DistributedContext(world_size=2))


@pytest.mark.slow
def test_a_sweep_under_torchrun_chooses_once_and_refits(tmp_path: Path) -> None:
    """Two gloo processes: every rank trains the variants, rank 0 writes, both agree on the best and refit it."""
    out = tmp_path / "sweep"
    config = _config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [
        "-m",
        "featdistill",
        "sweep",
        str(config),
        "--set",
        f"output.dir={out}",
        "--set",
        "data.holdout=32",
        "--set",
        "data.batch_size=16",
    ]
    command += ["--set", "train.epochs=1", "--grid", "distill.alpha=1e-3,auto", "--refit"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in record["variants"]] == ["done", "done"], [
        r["error"] for r in record["variants"]
    ]
    assert record["refit"]["runs"][0]["metrics"]["top1"] >= 0
    assert done.stdout.count("refitting") == done.stdout.count("variant(s) in") == 1  # said once, by rank 0
