"""Every run logs a training row; the progress bar's rate stays readable on slow runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from featdistill.cli.main import main
from featdistill.engine.logger import rate_text


def test_a_short_run_logs_its_last_step(tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """2 steps, far from the default log_every (20) and from the epoch's end: step 2 is still logged."""
    path = tiny_config(  # the student alone, log_every left at its default
        data={"val_limit": 8, "batch_size": 8},
        alone=True,
        train={"max_steps": 2},
        drop=["train.log_every"],
    )
    assert main(["train", str(path)]) == 0
    with (tmp_path / "run" / "log.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/ce")]
    assert [int(row["step"]) for row in rows] == [2]
    assert float(rows[0]["train/img_per_s"]) > 0


@pytest.mark.parametrize(
    ("rate", "shown"), [(0.312, "0.31"), (0.004, "0.004"), (3.46, "3.5"), (12.4, "12"), (1234.5, "1234")]
)
def test_rate_keeps_significant_digits_when_slow(rate: float, shown: str) -> None:
    assert rate_text(rate) == shown
