"""CLI warnings are one line each; an exporter's own warnings are summarised in one line."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill.cli.main import main
from featdistill.cli.messages import exporter_warnings, one_line_warnings
from featdistill.tasks.classification.models import build_classifier
from featdistill.tasks.ingest import SplitStats, warn_alpha


def _warn_from(filename: str, message: str) -> None:
    """A warning issued by code in ``filename`` (as torch.onnx's code would issue it)."""
    code = compile(f"import warnings\nwarnings.warn({message!r}, UserWarning)\n", filename, "exec")
    exec(code, {})


def _alpha_warning() -> None:
    stats = SplitStats("train", "data/train")
    stats.alpha_dropped = 1
    warn_alpha(stats)  # a featdistill warning


def test_cli_warnings_are_one_line_without_source_paths(tmp_path: Path) -> None:
    """A real run (warnings reach stderr there, not a test recorder): a partly transparent image warns."""
    pixels = np.full((6, 10, 4), 255, np.uint8)
    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    for k in range(2):
        pixels[0, 0] = (k, k, k, 254)
        Image.fromarray(pixels).save(tmp_path / "data" / "train" / "a" / f"{k}.png")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"data: {{name: imagefolder, root: {tmp_path / 'data'}, val_split: train}}\nmodel: {{student: resnet8}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "featdistill", "data", str(config)], capture_output=True, text=True, check=True
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr  # once per split read: train, then train as the evaluation split
    assert all(line.startswith("featdistill: warning: 2 images of split 'train'") for line in lines), lines
    assert all(".py" not in line and "UserWarning" not in line for line in lines), lines


def test_library_users_keep_python_warnings() -> None:
    with one_line_warnings(debug=False):
        inside = warnings.formatwarning("a\n b", UserWarning, "x.py", 3)
    outside = warnings.formatwarning("a", UserWarning, "x.py", 3)
    assert inside == "featdistill: warning: a b\n"
    assert outside.startswith("x.py:3: UserWarning: a")


def test_exporter_warnings_are_counted_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.warns(UserWarning, match="alpha channel") as caught, exporter_warnings(debug=False):
        for _ in range(3):
            _warn_from("/venv/site-packages/torch/onnx/utils.py", "internal detail A")
        _warn_from("/venv/site-packages/torch/jit/_script.py", "internal detail B")
        _alpha_warning()  # featdistill's own: shown as it comes
    assert [str(w.message)[:9] for w in caught] == ["1 images "]
    err = capsys.readouterr().err
    assert err == "featdistill: warning: the exporter gave 2 warnings (--debug shows them)\n"


def test_cli_export_prints_no_exporter_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnx")
    config = tmp_path / "cfg.yaml"
    config.write_text("data: {name: synthetic, root: unused, image_size: 16}\nmodel: {student: resnet8}\n")
    torch.save(build_classifier("resnet8", 10).state_dict(), tmp_path / "student.pt")
    args = ["export", str(config), "--checkpoint", str(tmp_path / "student.pt"), "--format", "onnx"]
    assert main([*args, "--output", str(tmp_path / "student.onnx")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert all(line.startswith("featdistill: warning: ") for line in err), err
    assert not any("site-packages" in line for line in err), err
    assert sum("the exporter gave" in line for line in err) <= 1, err
