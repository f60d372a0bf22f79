"""The data path at scale: data.in_memory: auto, parallel decoding into one tensor, the memory-mapped cache,
chunked statistics, fast listing, and torchvision's JPEG decoder against the Pillow rules."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.engine import ResumableLoader
from featdistill.tasks import memory
from featdistill.tasks.classification import data as classification_data
from featdistill.tasks.classification.data import (
    TensorBatchLoader,
    channel_stats,
    load_tensors,
    scan_imagefolder,
)
from featdistill.tasks.classification.task import ClassificationTask
from featdistill.tasks.decode import _decode_pillow, _decode_torchvision
from featdistill.tasks.ingest import SplitStats, format_report
from featdistill.tasks.memory import plan_memory
from featdistill.tasks.segmentation.data import CamVid
from tiny_data import camvid_tree

pytestmark = pytest.mark.usefixtures("one_thread")


def _folder(root: Path, count: int = 40, size: int = 6) -> Path:
    """``root/{train,test}/c{0,1}/``: ``count`` random images a class, half PNG (some 16-bit), half JPEG."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size + 1, 3), dtype=np.uint8)
                path = root / split / f"c{c}" / f"{i:03d}"
                if i % 3 == 0:
                    Image.fromarray(pixels).save(path.with_suffix(".jpg"), quality=90)
                elif i % 3 == 1:
                    Image.fromarray(pixels).save(path.with_suffix(".png"))
                else:  # 16-bit gray PNG: the Pillow path
                    levels = rng.integers(0, 65536, (size, size + 1), dtype=np.uint16)
                    Image.fromarray(levels).save(path.with_suffix(".png"))
    return root


@pytest.mark.parametrize("bits", [8, 16])
def test_parallel_decoding_gives_the_serial_bytes(tmp_path: Path, bits: int) -> None:
    root = _folder(tmp_path)  # 80 images: more than are decoded without workers
    serial = load_tensors("imagefolder", root, "train", bits=bits, workers=1, progress=False)
    stats = SplitStats("train", str(root / "train"))
    parallel = load_tensors("imagefolder", root, "train", bits=bits, workers=2, progress=False, stats=stats)
    assert parallel[0].dtype == (torch.uint8 if bits == 8 else torch.uint16)
    assert torch.equal(serial[0], parallel[0]) and torch.equal(serial[1], parallel[1])
    assert serial[2] == parallel[2] and stats.images == 80 and sum(stats.formats.values()) == 80
    resized = load_tensors("imagefolder", root, "train", image_size=4, workers=2, progress=False)
    alone = load_tensors("imagefolder", root, "train", image_size=4, workers=1, progress=False)
    assert resized[0].shape == (80, 3, 4, 4) and torch.equal(resized[0], alone[0])


def test_memory_mapped_cache_gives_a_fresh_decodes_bytes(tmp_path: Path) -> None:
    root, cache = _folder(tmp_path / "data"), tmp_path / "cache"
    fresh = load_tensors("imagefolder", root, "train", limit=50, progress=False)
    first = load_tensors("imagefolder", root, "train", limit=50, cache_dir=cache, workers=2, progress=False)
    (npy,) = cache.glob("*.npy")
    assert npy.with_suffix(".json").is_file() and not list(cache.glob("*.npz"))
    assert not list(cache.glob("*tmp*"))  # written to a temporary name, then renamed
    stats = SplitStats("train", str(root / "train"))
    second = load_tensors("imagefolder", root, "train", limit=50, cache_dir=cache, stats=stats)
    assert isinstance(np.load(npy, mmap_mode="r"), np.memmap)
    for got in (first, second):
        assert torch.equal(got[0], fresh[0]) and torch.equal(got[1], fresh[1]) and got[2] == fresh[2]
    assert stats.images == 50 and stats.classes == {"c0": 25, "c1": 25}


def test_cache_with_a_skipped_file_keeps_the_decoded_count(tmp_path: Path) -> None:
    root, cache = _folder(tmp_path / "data", count=3), tmp_path / "cache"
    (root / "train" / "c0" / "bad.png").write_bytes(b"not an image")
    args: dict[str, Any] = {"on_bad_file": "skip", "cache_dir": cache, "progress": False}
    with pytest.warns(UserWarning, match="skipping undecodable image"):
        first = load_tensors("imagefolder", root, "train", **args)
    second = load_tensors("imagefolder", root, "train", **args)
    assert first[0].shape[0] == second[0].shape[0] == 6 and torch.equal(first[0], second[0])
    with pytest.raises(ValueError, match="cannot decode image"):
        load_tensors("imagefolder", root, "train", cache_dir=tmp_path / "other", progress=False)
    assert not list((tmp_path / "other").glob("*"))  # no half-written cache file left behind


def test_channel_stats_are_exact_and_independent_of_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.randint(
        0, 256, (37, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    mean, std = channel_stats(images)
    values = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert mean == pytest.approx(values.mean(1).tolist(), abs=1e-12)
    assert std == pytest.approx(values.std(1).tolist(), abs=1e-12)
    monkeypatch.setattr(classification_data, "_STATS_CHUNK_VALUES", 100)  # chunks of one image
    assert channel_stats(images) == (mean, std)
    assert channel_stats(list(images)) == (mean, std)


def test_listing_keeps_rglob_order_and_skips(tmp_path: Path) -> None:
    for rel in ["a/z.png", "a/b/c.png", "a/b.png", "a/.hidden/x.png", "a/._y.png", "a/n.txt", "b/1.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    stats = SplitStats("s", str(tmp_path))
    classes, files = scan_imagefolder(tmp_path, stats)
    expected = sorted(p for p in (tmp_path / "a").rglob("*.png") if p.is_file() and "hidden" not in str(p))
    assert classes == ["a", "b"] and files[0] == [p for p in expected if "._" not in p.name]
    assert sorted(stats.skipped) == ["hidden or system file", "unsupported extension"]
    assert len(stats.skipped["hidden or system file"]) == 2


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_torchvision_jpeg_decoder_gives_the_pillow_rules_pixels(
    tmp_path: Path, mode: str, subsampling: int
) -> None:
    """The fast JPEG path (torchvision.io, libjpeg-turbo) against decode.py's Pillow path, bit for bit."""
    rng = np.random.default_rng(subsampling)
    coarse = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((45, 37), Image.BICUBIC).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, **({"subsampling": subsampling} if mode == "RGB" else {}))
    path = tmp_path / "x.jpg"
    path.write_bytes(buffer.getvalue())
    for bits in (8, 16):
        fast = _decode_torchvision(path.read_bytes(), bits)
        assert fast is not None
        reference = _decode_pillow(path, bits)
        assert torch.equal(fast.pixels, reference.pixels) and fast.mode == reference.mode


def test_plan_memory_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 10_000_000_000)
    assert plan_memory("auto", 3_900_000_000).in_memory
    assert not plan_memory("auto", 4_100_000_000).in_memory
    assert plan_memory("auto", 4_100_000_000, streamable=False).in_memory
    assert not plan_memory(False, 1).in_memory
    with pytest.raises(ValueError) as error:
        plan_memory(True, 15_000_000_000)
    message = str(error.value)
    assert "\n" not in message and "15.00 GB" in message and "10.00 GB memory available" in message
    on_disk = plan_memory(True, 15_000_000_000, cache_dir=tmp_path, cached=True)
    assert on_disk.in_memory and on_disk.cache == str(tmp_path)
    monkeypatch.setattr(memory, "_disk_free", lambda folder: 1)
    assert not plan_memory("auto", 15_000_000_000, cache_dir=tmp_path).in_memory


def _task(root: Path, **data: Any) -> ClassificationTask:
    tree = {
        "data": {"name": "imagefolder", "root": str(root), "batch_size": 4, **data},
        "model": {"student": "resnet8", "num_classes": 2},
        "output": {"progress": False},
    }
    return ClassificationTask(parse_config(tree))


def test_auto_chooses_by_the_estimate_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _folder(tmp_path, count=4)  # 8 + 8 images of 3 x 6 x 7 bytes: 2016 bytes decoded
    assert (
        parse_config({"data": {"name": "x", "root": "-"}, "model": {"student": "s"}}).data.in_memory == "auto"
    )
    monkeypatch.setattr(memory, "available_memory", lambda: 5100)  # 40 %: 2040 bytes, fits
    task = _task(root)
    train, _ = task.build_loaders()
    assert isinstance(train, TensorBatchLoader)
    report = task.data_report()
    assert report["memory"]["estimate_bytes"] == 2016 and report["memory"]["in_memory"]
    assert "in memory (data.in_memory: auto): 0.00 GB decoded" in format_report(report)
    monkeypatch.setattr(memory, "available_memory", lambda: 5000)  # 40 %: 2000 bytes, does not fit
    task = _task(root)
    train, _ = task.build_loaders()
    assert isinstance(train, ResumableLoader)
    assert "streaming from the files (data.in_memory: auto)" in format_report(task.data_report())


def test_a_split_larger_than_memory_takes_the_batch_path_from_the_memory_mapped_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``cache_dir`` on a disk with room: a split that does not fit in memory is decoded once into the cache
    file, never into memory, and read back memory-mapped (the page cache serves the batches), again so on
    the next run without decoding."""
    root = _folder(tmp_path / "data", count=4)
    monkeypatch.setattr(memory, "available_memory", lambda: 5000)  # 40 %: 2000 bytes < 2016 decoded
    cache = tmp_path / "cache"

    def build() -> tuple[ClassificationTask, Any]:
        task = _task(root, in_memory=True, options={"cache_dir": str(cache)})
        return task, task.build_loaders()[0]

    task, train = build()
    assert isinstance(train, TensorBatchLoader)
    assert f"memory-mapped from the decode cache in {cache}" in format_report(task.data_report())
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".npy")]) == 2 and not [f for f in files if "tmp" in f], files
    first = [batch[0].clone() for batch in train]

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded again although the cache holds the split")

    monkeypatch.setattr(classification_data, "decode_image", no_decoding)
    _, again = build()
    assert all(torch.equal(a, b[0]) for a, b in zip(first, again, strict=True))


def test_in_memory_true_that_cannot_fit_is_one_line_before_decoding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _folder(tmp_path / "data", count=4)
    monkeypatch.setattr(memory, "available_memory", lambda: 5000)

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(classification_data, "decode_image", no_decoding)
    tree = tiny_tree(
        tmp_path / "run",
        data={"name": "imagefolder", "root": str(root), "in_memory": True, "limit": None, "val_limit": None},
        model={"num_classes": 2},
    )
    assert main(["train", str(write_yaml(tmp_path / "cfg.yaml", tree))]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("featdistill: error: data.in_memory: true"), err
    assert "0.00 GB" in err[0] and "memory available" in err[0]


def test_segmentation_auto_and_parallel_decoding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = camvid_tree(tmp_path, {"train": 70}, np.random.default_rng(0), size=8)
    serial = CamVid(root, "train", in_memory=True, workers=1)
    stats = SplitStats("train", "")
    parallel = CamVid(root, "train", in_memory="auto", workers=2, stats=stats)
    assert parallel._cache is not None and serial._cache is not None
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial._cache, parallel._cache)
    )
    assert stats.extra["memory"]["estimate_bytes"] == 70 * 8 * 8 * 4 and stats.inspected == 70
    monkeypatch.setattr(memory, "available_memory", lambda: 100)
    assert CamVid(root, "train", in_memory="auto")._cache is None


def test_resume_ignores_the_memory_available_but_warns_when_the_path_changes(tmp_path: Path) -> None:
    from featdistill.tasks.ingest import _compare_resumed

    def report(in_memory: bool, available: int) -> dict[str, Any]:
        plan = {"setting": "auto", "in_memory": in_memory, "estimate_bytes": 10, "available_bytes": available}
        return {"task": "classification", "memory": plan, "splits": [{"split": "train", "images": 3}]}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compare_resumed(report(True, 100), report(True, 200), tmp_path / "data.json")
    with pytest.warns(UserWarning, match="started in memory but resumes streaming.*data.in_memory: true"):
        _compare_resumed(report(True, 100), report(False, 20), tmp_path / "data.json")
