"""Kill -9 at random moments, resume, and end bit-identical to an uninterrupted run; kill during a save."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.engine import CheckpointError, load_safely

STEPS = 16  # 256 images / batch 32 x 2 epochs
# One thread everywhere: the same kernels in and out of process, and no spinning OpenMP threads on a busy CPU.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_config(tmp_path: Path, out: Path) -> Path:
    """A small synthetic distillation run (student and teacher), a checkpoint after every step."""
    data = {"limit": 256, "val_limit": 64, "batch_size": 32}
    train = {"epochs": 2, "checkpoint_every": 1, "warmup_epochs": 0.5}
    return write_yaml(tmp_path / f"{out.name}.yaml", tiny_tree(out, data=data, train=train))


def launch(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "featdistill", "train", str(cfg), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=SUBPROCESS_ENV,
    )


def logged_steps(out: Path) -> list[int]:
    """Steps in ``log.csv`` (rows with a training loss), tolerating a file being written."""
    try:
        with open(out / "log.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (FileNotFoundError, csv.Error):
        return []
    return [int(float(r["step"])) for r in rows if r.get("train/loss")]


def final_tensors(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == STEPS and state["epoch"] == 2
    return {
        **{f"student.{k}": v for k, v in state["student"].items()},
        **{f"transforms.{k}": v for k, v in state["transforms"].items()},
    }


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    assert main(["train", str(write_config(tmp_path, ref_out))]) == 0  # uninterrupted, in this process

    cfg = write_config(tmp_path, out)
    rng = random.Random(1234)
    resumed_from: list[int] = []
    # First kill at a random moment of the start-up (before any checkpoint): --resume auto starts fresh.
    proc = launch(cfg, "--resume", "auto")
    time.sleep(rng.uniform(0.1, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(3):  # then kill after a random number of steps, with a random delay on top
        done = logged_steps(out)
        resumed_from.append(torch.load(out / "last.pt", weights_only=True)["step"] if done else 0)
        target = min(STEPS, (done[-1] if done else 0) + rng.randint(1, 4))
        proc = launch(cfg, "--resume", "auto")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            steps = logged_steps(out)
            if steps and steps[-1] >= target:
                time.sleep(rng.uniform(0.0, 0.08))  # lands in a step, a log write or a checkpoint write
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = launch(cfg, "--resume", "auto")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]

    assert sum(0 < s < STEPS for s in resumed_from) >= 2, resumed_from  # really resumed mid-run
    expected, got = final_tensors(ref_out), final_tensors(out)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different
    assert logged_steps(out) == logged_steps(ref_out) == list(range(1, STEPS + 1))  # no duplicated rows


SLOW_SAVE = textwrap.dedent(
    """
    import io, sys, time
    from pathlib import Path
    import torch
    from featdistill.cli.main import main

    real_save = torch.save

    def half_then_hang(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        Path(sys.argv[2]).touch()  # tell the test we are inside the write
        time.sleep(120)

    torch.save = half_then_hang
    main(["train", sys.argv[1], "--resume", "auto", "--set", "train.epochs=2"])
    """
)


def test_kill_during_checkpoint_write_keeps_previous(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path, out)
    assert main(["train", str(cfg), "--set", "train.epochs=1", "--set", "train.checkpoint_every=0"]) == 0
    last = out / "last.pt"
    before = last.read_bytes()

    marker = tmp_path / "inside-write"
    script = tmp_path / "slow_save.py"
    script.write_text(SLOW_SAVE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cfg), str(marker)], stderr=subprocess.PIPE, env=SUBPROCESS_ENV
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    partial = out / ".last.pt.tmp"
    assert partial.is_file() and partial.stat().st_size > 0  # the half-written file is left behind ...
    with pytest.raises(CheckpointError, match="cannot read"):
        load_safely(partial)
    assert last.read_bytes() == before  # ... but last.pt is the previous, complete checkpoint
    assert torch.load(last, weights_only=True)["epoch"] == 1

    # A resume reads last.pt, never the partial file, and replaces the partial file with its own.
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "auto", "--set", "train.max_steps=9"]) == 0
    assert torch.load(last, weights_only=True)["step"] == 9
    assert not partial.exists()


def test_evaluation_failure_keeps_the_trained_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoch's checkpoint is written before evaluation: a failing evaluation costs no trained step."""
    from featdistill.tasks.classification.task import ClassificationTask

    ref_out, out = tmp_path / "ref", tmp_path / "evalfail"
    settings = ["--set", "train.checkpoint_every=0"]
    assert main(["train", str(write_config(tmp_path, ref_out)), *settings]) == 0
    cfg = write_config(tmp_path, out)
    real_evaluate = ClassificationTask.evaluate

    def broken(self, *args, **kwargs):
        raise ValueError("cannot decode val image broken.png")

    monkeypatch.setattr(ClassificationTask, "evaluate", broken)
    assert main(["train", str(cfg), *settings]) == 2
    assert "cannot decode val image broken.png" in capsys.readouterr().err
    saved = torch.load(out / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 0, STEPS // 2)
    assert saved["pending_eval"] is True

    monkeypatch.setattr(ClassificationTask, "evaluate", real_evaluate)
    assert main(["train", str(cfg), "--resume", "auto", *settings]) == 0
    expected, got = final_tensors(ref_out), final_tensors(out)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert (out / "metrics.json").read_text() == (ref_out / "metrics.json").read_text()
    with open(out / "log.csv", newline="") as f:
        evaluated = [int(float(r["step"])) for r in csv.DictReader(f) if r.get("val/top1")]
    assert evaluated == [STEPS // 2, STEPS]  # epoch 1 was evaluated on resume


def test_sigkilled_run_leaves_its_folder_free_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The run folder's lock dies with the run, even while its forked DataLoader workers still live."""
    for split in ("train", "val"):
        for c in range(2):
            (tmp_path / "images" / split / f"class{c}").mkdir(parents=True)
            for i in range(8):
                pixels = np.full((8, 8, 3), 40 * c + 4 * i, np.uint8)
                Image.fromarray(pixels).save(tmp_path / "images" / split / f"class{c}" / f"{i}.png")
    out = tmp_path / "run"
    cfg = write_config(tmp_path, out)
    tree = yaml.safe_load(cfg.read_text())
    tree["data"] = {
        "name": "imagefolder",
        "root": str(tmp_path / "images"),
        "val_split": "val",
        "in_memory": False,  # read image by image in 2 forked DataLoader workers
        "workers": 2,
        "image_size": 8,
        "batch_size": 4,
    }
    tree["model"] = {"student": "resnet8", "num_classes": 2}
    cfg.write_text(yaml.safe_dump(tree))
    steps = 8  # 16 images / 4 x 2 epochs

    proc = launch(cfg)
    deadline = time.monotonic() + 60
    while proc.poll() is None and len(logged_steps(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert (out / ".lock").read_text() == f"{proc.pid}\n"  # left behind by the killed run, with its pid
    assert workers and all(Path(f"/proc/{pid}").exists() for pid in workers)  # not gone yet
    assert 0 < torch.load(out / "last.pt", weights_only=True)["step"] < steps

    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "auto"]) == 0, capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=True)["step"] == steps
    assert logged_steps(out) == list(range(1, steps + 1))
