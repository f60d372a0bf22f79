"""The ingest report: what a run reads from each data split and what it leaves out, and why.

Every task fills one :class:`SplitStats` per split while it lists and decodes files; ``data_report()``
turns them into a plain dict (written as ``data.json``) and :func:`format_report` into the lines printed at
the start of ``train`` / ``eval`` and by ``featdistill data``.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from .memory import MemoryPlan, memory_line

__all__ = [
    "FIRST_NAMES",
    "HIDDEN",
    "OUTSIDE_CLASSES",
    "SKIPPED_BAD",
    "UNDECODABLE_SKIPPED",
    "UNSUPPORTED",
    "ReportsData",
    "SplitStats",
    "check_not_constant",
    "evenly_spaced",
    "format_report",
    "warn_alpha",
]

#: How many file names the report lists per reason (then "and N more").
FIRST_NAMES = 20
UNSUPPORTED = "unsupported extension"
OUTSIDE_CLASSES = "not in a class folder"
HIDDEN = "hidden or system file"
#: The end of every reason for a file that ``data.on_bad_file: raise`` stops on (a task's own bad-file reasons,
#: e.g. segmentation's bad masks or detection's bad labels, end the same way).
SKIPPED_BAD = " (on_bad_file: skip)"
UNDECODABLE_SKIPPED = "undecodable" + SKIPPED_BAD


@dataclass
class SplitStats:
    """What one split holds: images used, files skipped by reason, classes, sizes, pixel formats."""

    name: str
    root: str
    images: int = 0
    classes: Counter = field(default_factory=Counter)  # class name -> images used
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> file paths
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> images (as stored, before resizing)
    formats: Counter = field(default_factory=Counter)  # pixel format (Pillow mode) -> images
    alpha_dropped: int = 0
    inspected: int | None = None  # images whose size/format were read (None: all used images)
    held_out: int = 0  # of ``images``, kept out of training for scoring (data.holdout)
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific counts

    def skip(self, reason: str, path: str | Path) -> None:
        self.skipped.setdefault(reason, []).append(str(path))

    def saw(self, width: int, height: int, mode: str, alpha: bool) -> None:
        """Record one decoded image's stored size and pixel format."""
        self.sizes[f"{width}x{height}"] += 1
        self.formats[mode] += 1
        self.alpha_dropped += int(alpha)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.name,
            "root": self.root,
            "images": self.images,
            "classes": dict(self.classes),
            "skipped": {
                reason: {"count": len(paths), "first": paths[:FIRST_NAMES]}
                for reason, paths in self.skipped.items()
            },
            "sizes": dict(self.sizes.most_common()),
            "formats": dict(self.formats.most_common()),
            "alpha_dropped": self.alpha_dropped,
            "inspected": self.images if self.inspected is None else self.inspected,
            "held_out": self.held_out,
            **self.extra,
        }


class ReportsData:
    """A task's ingest report, one method for every task: ``build_loaders`` fills ``data_stats``."""

    name: str
    data_stats: dict[str, SplitStats]  # split -> what was read, reset by each build_loaders()
    memory_plan: MemoryPlan | None = None  # what data.in_memory chose (tasks that decode in memory)

    def data_report(self) -> dict[str, Any]:
        """The ingest report of the train and validation splits (reads them if not loaded yet)."""
        if not self.data_stats:
            self.build_loaders()  # type: ignore[attr-defined]  # every task has one
        report: dict[str, Any] = {"task": self.name}
        if self.memory_plan is not None:
            report["memory"] = self.memory_plan.to_dict()
        return report | {"splits": [stats.to_dict() for stats in self.data_stats.values()]}


def evenly_spaced(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``, first and last included."""
    k = min(n, k)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def warn_alpha(stats: SplitStats) -> None:
    """Say once per split that alpha channels were dropped."""
    if stats.alpha_dropped:
        warnings.warn(
            f"{stats.alpha_dropped} images of split {stats.name!r} ({stats.root}) have an alpha channel "
            "(transparency); it was dropped and their colours kept as stored",
            stacklevel=2,
        )


def check_not_constant(images: torch.Tensor, split: str, root: str) -> None:
    """Raise when every image of a split is the same (a blank export, levels clipped by a decoder)."""
    if images.shape[0] < 2:
        return
    for chunk in images[1:].split(1024):  # real data differ in the first chunk: stop there
        if not bool((chunk == images[:1]).all()):
            return
    raise ValueError(
        f"all {images.shape[0]} images of split {split!r} ({root}) are identical: the data look "
        "constant, so there is nothing to learn; check the files (e.g. blank or clipped exports)"
    )


def _counts(counter: dict[str, int], limit: int = 6) -> str:
    items = list(counter.items())
    shown = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "") or "-"


def _pixel_line(split: dict[str, Any]) -> str:
    """Labelled pixels per class, with each class's share of all pixels (segmentation)."""
    pixels, ignored = split["class_pixels"], split["ignored_pixels"]
    total = max(sum(pixels.values()) + ignored, 1)
    shares = ", ".join(f"{name} {n} ({100 * n / total:.1f}%)" for name, n in pixels.items())
    return (
        f"    pixels per class (labels of {split['pixel_images']} decoded images): {shares}; "
        f"ignored {ignored} ({100 * ignored / total:.1f}%)"
    )


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of a ``data_report()`` dict."""
    lines = [f"data ({report['task']}):"]
    if "memory" in report:
        lines.append(memory_line(report["memory"]))
    for split in report["splits"]:
        inspected = split["inspected"]
        sample = "" if inspected == split["images"] else f" (sizes/formats from {inspected} sampled images)"
        lines.append(f"  {split['split']}: {split['images']} images from {split['root']}{sample}")
        if "label_root" in split:
            lines.append(f"    labels from {split['label_root']}")
        if "class_pixels" in split:
            lines.append(_pixel_line(split))
        if split["classes"]:
            lines.append(f"    classes ({len(split['classes'])}): {_counts(split['classes'], 10)}")
        lines.append(f"    sizes: {_counts(split['sizes'])}; formats: {_counts(split['formats'])}")
        if split.get("held_out"):
            lines.append(
                f"    holdout (data.holdout): {split['held_out']} of these images kept out of training for "
                f"scoring; {split['images'] - split['held_out']} trained on"
            )
        if split["alpha_dropped"]:
            lines.append(
                f"    alpha channel dropped (colours kept as stored) in {split['alpha_dropped']} images"
            )
        for reason, entry in split["skipped"].items():
            left = entry["count"] - len(entry["first"])
            more = f" and {left} more" if left > 0 else ""
            lines.append(f"    skipped, {reason}: {entry['count']} ({', '.join(entry['first'])}{more})")
        for key, what in (
            ("without_annotations", "without annotations"),
            ("crowd_only", "with only crowd regions"),
        ):
            if key in split:
                entry = split[key]
                more = ", ..." if entry["count"] > len(entry["first"]) else ""
                names = f" ({', '.join(map(str, entry['first']))}{more})" if entry["count"] else ""
                lines.append(f"    images {what}: {entry['count']}{names}")
        if "memory" in split:
            lines.append("  " + memory_line(split["memory"]))
    return "\n".join(lines)


DATA_JSON = "data.json"


def _without_memory(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its memory plans (the memory available differs from run to run)."""
    splits = [{k: v for k, v in split.items() if k != "memory"} for split in report.get("splits", [])]
    return {k: v for k, v in report.items() if k != "memory"} | {"splits": splits}


def _compare_resumed(before: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """Warn when a resumed run reads other data, or (data.in_memory: auto) takes the other data path."""
    was, is_ = before.get("memory"), now.get("memory")
    if _without_memory(before) != _without_memory(now):
        warnings.warn(
            f"the data read now differ from {path}, written when this run started (files added, "
            "removed or changed?); the resumed run trains on the data read now",
            stacklevel=3,
        )
    if was is not None and is_ is not None and was["in_memory"] != is_["in_memory"]:
        paths = {True: "in memory", False: "streaming"}
        warnings.warn(
            f"this run started {paths[was['in_memory']]} but resumes {paths[is_['in_memory']]} "
            f"(data.in_memory: {is_['setting']}, memory available now); the batches of the rest of the run "
            f"differ from an uninterrupted run's: set data.in_memory: {str(was['in_memory']).lower()} to resume "
            "it exactly",
            stacklevel=3,
        )


def announce_data(
    task: Any, out_dir: str | Path | None = None, *, resuming: bool = False, stream: TextIO | None = None
) -> dict[str, Any]:
    """Print ``task.data_report()`` once (rank 0) and write it to ``out_dir/data.json``.

    A resumed run keeps the ``data.json`` it started with (the run folder is not changed before the
    resume is accepted) and warns when the data now read differ from it.
    """
    from ..atomic import write_text_atomic
    from ..engine.distributed import is_main

    report = task.data_report()
    if not is_main():
        return report
    print(format_report(report), file=stream or sys.stdout, flush=True)
    if out_dir is not None:
        path = Path(out_dir) / DATA_JSON
        text = json.dumps(report, indent=1) + "\n"
        if resuming and path.is_file():
            _compare_resumed(json.loads(path.read_text()), report, path)
        else:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_text_atomic(text, path)
    return report
