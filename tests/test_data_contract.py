"""One data contract: the in-memory and streaming classification loaders read the same data; the ingest
report counts what is used and skipped; degenerate data get the right message."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import image_folder_data, tiny_tree
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.tasks.classification.data import channel_stats
from featdistill.tasks.classification.task import ClassificationTask
from featdistill.tasks.ingest import HIDDEN, UNSUPPORTED
from tiny_data import image_folder

SIZE = 12  # not a power of two, not 32 or 224: a default size would show


def _folder(root: Path, per_class: int = 8, classes: int = 3, constant: bool = False) -> Path:
    rng = np.random.default_rng(0)

    def pixels(label: int, i: int) -> np.ndarray:
        if constant:
            return np.full((SIZE, SIZE, 3), 90, np.uint8)
        return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)

    names = [f"c{c}" for c in range(classes)]
    return image_folder(root, {"train": per_class, "val": per_class}, names, pixels)


def _config(root: Path, out: Path, **data: Any) -> dict[str, Any]:
    data = image_folder_data(
        root, **{"val_split": "val", "limit": 18, "val_limit": 7, "batch_size": 4, **data}
    )
    return tiny_tree(out, data=data, model={"num_classes": 3}, alone=True)


def test_both_loaders_read_the_same_data(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    loaders = {}
    for in_memory in (True, False):
        task = ClassificationTask(parse_config(_config(root, tmp_path / "run", in_memory=in_memory)))
        loaders[in_memory] = task.build_loaders()
    (mem_train, mem_val), (stream_train, stream_val) = loaders[True], loaders[False]
    assert len(mem_train) == len(stream_train) == 18 // 4  # limit honoured, incomplete batch dropped
    assert len(mem_val) == len(stream_val) == 2  # val_limit 7: batches of 4 and 3
    assert next(iter(mem_train))[0].shape == next(iter(stream_train))[0].shape == (4, 3, SIZE, SIZE)
    # no augmentation in evaluation: the same pixels, decoded and normalised alike
    for (x_mem, y_mem), (x_stream, y_stream) in zip(mem_val, stream_val):
        assert torch.equal(y_mem, y_stream)
        torch.testing.assert_close(x_mem, x_stream, atol=1e-5, rtol=0)


def test_the_same_config_trains_the_same_steps_both_ways(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "data")
    steps = {}
    for in_memory in (True, False):
        out = tmp_path / f"run-{in_memory}"
        path = tmp_path / f"cfg-{in_memory}.yaml"
        path.write_text(yaml.safe_dump(_config(root, out, in_memory=in_memory)))
        assert main(["train", str(path)]) == 0, capsys.readouterr().err
        with open(out / "log.csv") as f:
            steps[in_memory] = [row["step"] for row in csv.DictReader(f) if row.get("step")]
    assert steps[True] == steps[False] and len(steps[True]) >= 18 // 4


def test_streaming_randomness_is_seeded_per_sample_without_manual_seed(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "data")
    task = ClassificationTask(parse_config(_config(root, tmp_path / "run", in_memory=False)))
    train, _ = task.build_loaders()
    train.set_epoch(2)
    full = list(train.iterate())

    def forbidden(*args: Any) -> None:
        raise AssertionError("torch.manual_seed called while loading")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    state = torch.get_rng_state()
    resumed = list(train.iterate(start_batch=2))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not touched
    assert len(resumed) == len(full) - 2
    for (x1, y1), (x2, y2) in zip(full[2:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    train.set_epoch(3)
    assert not torch.equal(torch.cat([x for x, _ in train.iterate()]), torch.cat([x for x, _ in full]))


def test_resized_crop_is_streaming_only(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", per_class=2)
    forced = _config(root, tmp_path / "run", crop="resized", image_size=8, in_memory=True)
    with pytest.raises(ValueError, match=r"data\.crop: resized needs data\.in_memory: false or auto"):
        ClassificationTask(parse_config(forced)).build_loaders()
    for in_memory in (False, "auto"):  # auto streams resized crops
        streaming = _config(root, tmp_path / "run", crop="resized", image_size=8, in_memory=in_memory)
        train, val = ClassificationTask(parse_config(streaming)).build_loaders()
        assert next(iter(train))[0].shape == next(iter(val))[0].shape == (4, 3, 8, 8)


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streaming"])
def test_constant_dataset_is_named(tmp_path: Path, capsys, in_memory: bool) -> None:
    root = _folder(tmp_path / "data", constant=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(root, tmp_path / "run", in_memory=in_memory)))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featdistill: error: all 18 images of split 'train'") and len(err.splitlines()) == 1
    assert "the data look constant" in err


def test_constant_channel_normalises_to_zero_not_nan() -> None:
    """The NaN at step 1: std 0 of a channel made (x - mean) / std = 0 / 0."""
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    images[:, 2] = 77  # a channel that never changes
    mean, std = channel_stats(images)
    assert std[2] == pytest.approx(1 / 255) and std[0] > 0.1
    from featdistill.tasks.classification.augment import normalize

    out = normalize(images, mean, std)
    assert torch.isfinite(out).all() and out[:, 2].abs().max() < 1e-4


def test_report_is_printed_written_and_counts_skipped_files(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "data")
    extra = root / "train" / "c1"
    (extra / "readme.txt").write_text("notes")
    (extra / ".DS_Store").write_bytes(b"\0")
    Image.fromarray(np.zeros((SIZE, SIZE, 4), np.uint8)).save(extra / "zz_alpha.png")  # 9th image of c1
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(root, tmp_path / "run", limit=None, val_limit=None)))
    assert main(["data", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    train = report["splits"][0]
    assert report["task"] == "classification" and train["split"] == "train"
    assert train["images"] == 25 and train["classes"] == {"c0": 8, "c1": 9, "c2": 8}
    assert train["skipped"] == {
        HIDDEN: {"count": 1, "first": [str(extra / ".DS_Store")]},
        UNSUPPORTED: {"count": 1, "first": [str(extra / "readme.txt")]},
    }
    assert train["formats"] == {"RGB": 24, "RGBA": 1} and train["alpha_dropped"] == 1
    assert train["sizes"] == {f"{SIZE}x{SIZE}": 25}
    with pytest.warns(UserWarning, match="1 images of split 'train'.*alpha channel"):
        assert main(["train", str(path), "--set", "train.max_steps=1"]) == 0
    printed = capsys.readouterr().out
    assert "train: 25 images from" in printed and "skipped, unsupported extension: 1" in printed
    written = json.loads((tmp_path / "run" / "data.json").read_text())
    assert "in memory (data.in_memory: auto): 0.00 GB decoded" in printed
    for plan in (written.pop("memory"), report.pop("memory")):  # the memory available varies between runs
        assert plan["in_memory"] and plan["estimate_bytes"] == (25 + 24) * 3 * SIZE * SIZE  # train + val
    assert written == report


def test_resumed_run_keeps_its_data_json_and_warns_when_data_changed(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "data", per_class=4)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(root, tmp_path / "run", limit=None, val_limit=None)))
    assert main(["train", str(path), "--set", "train.max_steps=1"]) == 0
    written = (tmp_path / "run" / "data.json").read_text()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(root / "train" / "c0" / "new.png")
    with pytest.warns(UserWarning, match="the data read now differ from .*data.json"):
        assert main(["train", str(path), "--resume", "auto", "--set", "train.max_steps=2"]) == 0
    assert (tmp_path / "run" / "data.json").read_text() == written


def test_16_bit_data_both_ways(tmp_path: Path) -> None:
    """``data.bits: 16``: uint16 batches in memory, the same normalised pixels streaming; levels 1000 and
    1100 (one 8-bit level apart at most) stay apart."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for c, level in enumerate((1000, 1100)):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(2):
                pixels = np.full((SIZE, SIZE), level + 7 * i, np.uint16)
                Image.fromarray(pixels).save(root / split / f"c{c}" / f"{i}.png")
    batches = {}
    for in_memory in (True, False):
        cfg = _config(root, tmp_path / "run", in_memory=in_memory, bits=16, limit=None, val_limit=None)
        task = ClassificationTask(parse_config(cfg))
        train, val = task.build_loaders()
        if in_memory:
            assert train.images.dtype == torch.uint16
        batches[in_memory] = next(iter(val))[0]
    torch.testing.assert_close(batches[True], batches[False], atol=1e-4, rtol=0)
    per_image = batches[True][:, 0, 0, 0]
    assert per_image.unique().numel() == 4  # 1000, 1007, 1100, 1107: every level kept
