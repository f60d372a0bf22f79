"""Tensor data path: batch augmentation, TensorBatchLoader determinism/resume/ranks, dataset loading."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill.tasks.classification.augment import crop_flip, crop_flip_params, normalize, random_crop_flip
from featdistill.tasks.classification.data import (
    NORMALIZATION,
    TensorBatchLoader,
    load_tensors,
)
from featdistill.tasks.classification.streaming import streaming_loader

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _reference_crop(image: torch.Tensor, pad: int, dy: int, dx: int) -> torch.Tensor:
    """Loop-free single-image reference: zero-pad then slice."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    return padded[:, dy : dy + h, dx : dx + w]


def _batch(n: int = 8, channels: int = 3, size: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


# ---------------------------------------------------------------- augmentation


def test_random_crop_flip_keeps_shape_dtype_and_values() -> None:
    batch = _batch(16)
    out = random_crop_flip(batch, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    allowed = set(batch.unique().tolist()) | {0}
    assert set(out.unique().tolist()) <= allowed
    assert not torch.equal(out, batch)


def test_pad_zero_without_flip_is_identity() -> None:
    batch = _batch(5)
    out = random_crop_flip(batch, pad=0, generator=torch.Generator().manual_seed(3), flip=False)
    assert torch.equal(out, batch)


def test_crop_moves_unique_pattern_by_drawn_offset() -> None:
    image = torch.arange(1, 1 + 2 * 7 * 5, dtype=torch.uint8).view(1, 2, 7, 5)
    pad = 3
    for seed in range(6):
        out = random_crop_flip(image, pad, torch.Generator().manual_seed(seed), flip=False)
        dy, dx, flips = crop_flip_params(1, pad, False, torch.Generator().manual_seed(seed))
        assert not flips.any()
        expected = _reference_crop(image[0], pad, int(dy), int(dx))
        assert torch.equal(out[0], expected)
        # the pixel that was at (0, 0) moves by (pad - dy, pad - dx) when it stays in view
        row, col = pad - int(dy), pad - int(dx)
        if 0 <= row < 7 and 0 <= col < 5:
            assert out[0, 0, row, col] == 1


def test_explicit_offsets_and_flip_match_torch_flip() -> None:
    batch = _batch(6, size=5)
    dy = torch.tensor([0, 4, 2, 1, 3, 2])
    dx = torch.tensor([4, 0, 2, 3, 1, 2])
    flips = torch.tensor([True, False, True, False, True, True])
    out = crop_flip(batch, 2, dy, dx, flips)
    plain = crop_flip(batch, 2, dy, dx, torch.zeros(6, dtype=torch.bool))
    for i in range(6):
        assert torch.equal(plain[i], _reference_crop(batch[i], 2, int(dy[i]), int(dx[i])))
        expected = torch.flip(plain[i], dims=[-1]) if flips[i] else plain[i]
        assert torch.equal(out[i], expected)
    assert torch.equal(out[2], torch.flip(batch[2], dims=[-1]))  # centred crop + flip


def test_flip_probability_and_determinism() -> None:
    _, _, flips = crop_flip_params(4000, 4, True, torch.Generator().manual_seed(0))
    assert 0.45 < flips.float().mean().item() < 0.55
    first = random_crop_flip(_batch(32), 4, torch.Generator().manual_seed(7))
    second = random_crop_flip(_batch(32), 4, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_normalize_values_and_channels_last() -> None:
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    batch = _batch(4, size=3)
    out = normalize(batch, mean, std, channels_last=True)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    expected = (batch.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(out, expected)
    scaled = normalize(batch)
    torch.testing.assert_close(scaled, batch.float() / 255)
    assert batch.dtype == torch.uint8  # input untouched
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(batch, (0.5,), (0.5,))


def test_normalize_standardises_real_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(256, 3, 8, 8, generator=generator) * 40 + 120).clamp(0, 255).to(torch.uint8)
    floats = batch.float() / 255
    mean, std = floats.mean(dim=(0, 2, 3)).tolist(), floats.std(dim=(0, 2, 3)).tolist()
    out = normalize(batch, mean, std)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


# ---------------------------------------------------------------- loader


def _id_dataset(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels encode their index, labels equal to the index."""
    ids = torch.arange(n)
    images = (ids % 251 + 1).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return images, ids


def _collect(loader: TensorBatchLoader, start_batch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.iterate(start_batch))


def test_loader_determinism_epochs_and_coverage() -> None:
    images, labels = _id_dataset(50)
    kwargs = {"shuffle": True, "augment": True, "pad": 1, "seed": 5}
    first = _collect(TensorBatchLoader(images, labels, 8, **kwargs))
    second = _collect(TensorBatchLoader(images, labels, 8, **kwargs))
    assert len(first) == 7
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert sorted(torch.cat([y for _, y in first]).tolist()) == list(range(50))
    loader = TensorBatchLoader(images, labels, 8, **kwargs)
    loader.set_epoch(1)
    other = torch.cat([y for _, y in loader])
    assert not torch.equal(other, torch.cat([y for _, y in first]))
    assert sorted(other.tolist()) == list(range(50))


def test_loader_without_shuffle_or_augment_is_plain_batches() -> None:
    images, labels = _id_dataset(10)
    loader = TensorBatchLoader(images, labels, 4, shuffle=False, mean=(0.0,) * 3, std=(1.0,) * 3)
    batches = list(loader)
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    torch.testing.assert_close(batches[0][0], images[:4].float() / 255)
    assert len(TensorBatchLoader(images, labels, 4, drop_last=True)) == 2


def test_loader_resume_mid_epoch_matches_full_pass() -> None:
    images, labels = _id_dataset(45)
    loader = TensorBatchLoader(images, labels, 6, augment=True, pad=2, seed=11, channels_last=True)
    loader.set_epoch(3)
    full = _collect(loader)
    resumed = _collect(loader, start_batch=4)
    assert len(resumed) == len(full) - 4
    for (x1, y1), (x2, y2) in zip(full[4:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert _collect(loader, start_batch=len(loader)) == []
    with pytest.raises(ValueError, match="start_batch"):
        _collect(loader, start_batch=len(loader) + 1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_concatenated_equal_one_rank(drop_last: bool) -> None:
    images, labels = _id_dataset(40)
    common = {"augment": True, "pad": 1, "seed": 2, "drop_last": drop_last}
    single = TensorBatchLoader(images, labels, 12, **common)
    ranks = [TensorBatchLoader(images, labels, 6, rank=r, world_size=2, **common) for r in range(2)]
    for loader in (single, *ranks):
        loader.set_epoch(4)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == (3 if drop_last else 4)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert y0.numel() == y1.numel()


def test_uneven_dataset_is_padded_across_ranks() -> None:
    images, labels = _id_dataset(11)
    ranks = [TensorBatchLoader(images, labels, 4, rank=r, world_size=2, seed=1) for r in range(2)]
    per_rank = [[y for _, y in loader] for loader in ranks]
    assert [len(b) for b in per_rank] == [2, 2]
    assert [y.numel() for y in per_rank[0]] == [y.numel() for y in per_rank[1]] == [4, 2]
    seen = torch.cat([y for batches in per_rank for y in batches])
    assert seen.numel() == 12 and set(seen.tolist()) == set(range(11))


def test_loader_argument_errors() -> None:
    images, labels = _id_dataset(4)
    with pytest.raises(ValueError, match="uint8"):
        TensorBatchLoader(images.float(), labels, 2)
    with pytest.raises(ValueError, match="rank"):
        TensorBatchLoader(images, labels, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="labels"):
        TensorBatchLoader(images, labels[:3], 2)


# ---------------------------------------------------------------- dataset loading


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.png")


def test_imagefolder_corrupt_file_raise_and_skip(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", {"cat": [(5, 6)] * 2, "dog": [(5, 6)] * 3})
    bad = tmp_path / "train" / "dog" / "001b.jpg"
    bad.write_bytes(b"definitely not a jpeg" * 10)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_tensors("imagefolder", tmp_path, "train")
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        images, labels, classes = load_tensors("imagefolder", tmp_path, "train", on_bad_file="skip")
    assert images.shape == (5, 3, 5, 6) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 1] and classes == ["cat", "dog"]
    reference = np.array(Image.open(tmp_path / "train" / "dog" / "002.png"))
    assert torch.equal(images[4], torch.from_numpy(reference).permute(2, 0, 1))


def test_imagefolder_sizes_limit_and_cache(tmp_path: Path) -> None:
    _write_folder(
        tmp_path / "data" / "val", {"a": [(4, 4), (6, 5), (4, 4)], "b": [(8, 8)] * 2, "c": [(4, 4)]}
    )
    with pytest.raises(ValueError, match="image_size"):
        load_tensors("imagefolder", tmp_path / "data", "val")
    images, labels, _ = load_tensors("imagefolder", tmp_path / "data", "val", image_size=(3, 5), limit=4)
    assert images.shape == (4, 3, 3, 5) and labels.tolist() == [0, 0, 1, 2]
    cache = tmp_path / "cache"
    first = load_tensors("imagefolder", tmp_path / "data", "val", image_size=4, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 1
    second = load_tensors("imagefolder", tmp_path / "data", "val", image_size=4, cache_dir=cache)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]) and first[2] == second[2]
    load_tensors("imagefolder", tmp_path / "data", "val", image_size=4, limit=3, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "train"))):
        load_tensors("imagefolder", tmp_path, "train")
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        load_tensors("imagefolder", tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_tensors("cifar10", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_tensors("svhn", tmp_path, "train")


def test_streaming_loader_eval_and_distributed(tmp_path: Path) -> None:
    _write_folder(tmp_path / "val", {"a": [(20, 24)] * 3, "b": [(30, 18)] * 2})
    loader = streaming_loader(tmp_path, "val", batch_size=2, train=False, image_size=16)
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 16, 16) and labels.tolist() == [0, 0]
    sharded = streaming_loader(
        tmp_path, "val", batch_size=2, train=True, image_size=8, rank=1, world_size=2, crop="resized"
    )
    assert sharded.sampler.per_rank == 3 and len(sharded) == 1
    assert next(iter(sharded))[0].shape == (2, 3, 8, 8)


@pytest.mark.slow
def test_real_cifar10_imagefolder(tmp_path: Path) -> None:
    if not (DATA / "cifar10" / "test").is_dir():
        pytest.skip(f"real data not found at {DATA / 'cifar10'}")
    images, labels, classes = load_tensors("imagefolder", DATA / "cifar10", "test", limit=200)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [20] * 10 and classes[0] == "airplane" and len(classes) == 10
    mean = (images.float() / 255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.tensor(NORMALIZATION["cifar10"][0]), atol=0.05, rtol=0)
    loader = TensorBatchLoader(images, labels, 64, augment=True, mean=mean.tolist(), std=(0.25,) * 3)
    x, y = next(iter(loader))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.slow
def test_real_fashionmnist_test_split() -> None:
    if not (DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {DATA / 'FashionMNIST'}")
    images, labels, classes = load_tensors("fashionmnist", DATA, "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [1000] * 10 and classes[-1] == "Ankle boot"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small, small_labels, _ = load_tensors("fashionmnist", DATA, "test", limit=25, image_size=32)
    assert small.shape == (25, 1, 32, 32)
    assert small_labels.bincount().tolist() == [3] * 5 + [2] * 5
