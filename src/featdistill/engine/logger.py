"""Run logs: a CSV file always, TensorBoard when it is installed; only the main process writes."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..atomic import explain_write_error, write_text_atomic


def rate_text(images_per_second: float) -> str:
    """A throughput for the progress bar: whole numbers from 10 up, two significant digits below (0.31)."""
    return f"{images_per_second:.0f}" if images_per_second >= 10 else f"{images_per_second:.2g}"


class RunLogger:
    """Appends scalar rows to ``<dir>/log.csv`` (one row per call) and mirrors them to TensorBoard."""

    def __init__(
        self, out_dir: str | Path, csv_log: bool = True, tensorboard: bool = True, enabled: bool = True
    ):
        self.enabled = enabled
        self.path = Path(out_dir) / "log.csv"
        self._csv = csv_log and enabled
        self._header: list[str] | None = None
        self._tb = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Write one row: ``step`` plus scalar ``values`` (new keys extend the header)."""
        if not self.enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        if self._csv:
            self._append(row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step":
                    self._tb.add_scalar(key, value, step)

    def _append(self, row: dict[str, float]) -> None:
        if self._header is None and self.path.exists():
            with open(self.path, newline="") as f:
                self._header = csv.DictReader(f).fieldnames or []
        new_keys = [k for k in row if k not in (self._header or [])]
        if self._header is None or new_keys:
            # A new column (e.g. the first evaluation metric): rewrite the file with the wider header.
            rows = []
            if self.path.exists():
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self._header = (self._header or []) + new_keys
            self._rewrite(rows)
        line = io.StringIO()
        csv.DictWriter(line, fieldnames=self._header).writerow(row)
        try:
            with open(self.path, "a", newline="") as f:
                f.write(line.getvalue())
        except OSError as err:  # a full disk: one line naming the folder (a resume drops an incomplete row)
            raise explain_write_error(err, self.path, len(line.getvalue())) from err

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the CSV atomically: a kill during the rewrite leaves the old or the new file, whole."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self._header or ["step"])
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(text.getvalue(), self.path)

    def truncate(self, step: int) -> None:
        """Drop rows logged after ``step`` (and incomplete rows): a resumed run logs them again."""
        if not (self._csv and self.path.exists()):
            return
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self._header = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if None not in r.values() and _step(r) is not None and _step(r) <= step]
        if len(kept) != len(rows):
            self._rewrite(kept)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _step(row: dict[str, Any]) -> float | None:
    try:
        return float(row["step"])
    except (KeyError, TypeError, ValueError):
        return None
