"""A resumable, epoch-seeded DataLoader for datasets that return one sample at a time.

The order of an epoch depends only on (seed, epoch), each sample's random augmentation only on (seed, epoch,
index), and ``iterate(start_batch)`` skips the first batches without loading them, so a run resumed mid-epoch
sees the same remaining batches as an uninterrupted one, whatever the number of workers.
With several processes each rank takes a disjoint, equally long share (as DistributedSampler does).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """Indices of one rank for one epoch, optionally starting after ``start`` of them."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self.per_rank = -(-size // world_size)

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        order += order[: self.per_rank * self.world_size - self.size]  # pad so every rank gets as many
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededItems(Dataset):
    """Sample ``i`` with its randomness seeded from (seed, epoch, i) only.

    A dataset with a ``seeded_item(index, generator)`` method gets a ``torch.Generator`` seeded so (a few
    microseconds); any other ``dataset[i]`` runs under torch, NumPy and Python RNGs seeded so and then
    restored (``torch.manual_seed`` costs ~70 us to 1 ms per call). Random augmentation then depends on the
    sample and the epoch only: not on what the training loop drew from the global RNGs, the worker that
    loads the sample, or where a resumed epoch starts.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + index) % 2**63
        seeded_item = getattr(self.dataset, "seeded_item", None)
        if seeded_item is not None:
            return seeded_item(index, torch.Generator().manual_seed(item_seed))
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            random.seed(item_seed)
            np.random.seed(item_seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ResumableLoader:
    """Wraps a ``Dataset`` in a DataLoader driven by an ``EpochSampler``."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        drop_last: bool = False,
    ) -> None:
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.items = SeededItems(dataset, seed)
        self.sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size)
        self.workers, self.collate_fn = workers, collate_fn

    def __len__(self) -> int:
        n = self.sampler.per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = self.items.epoch = epoch

    def iterate(self, start_batch: int = 0) -> Iterator[Any]:
        self.sampler.start = start_batch * self.batch_size
        loader = DataLoader(
            self.items,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.workers,
            collate_fn=self.collate_fn,
            drop_last=self.drop_last,
            persistent_workers=False,
            # Worker seeds from here, not from the global RNG, which resuming must leave as checkpointed.
            generator=torch.Generator().manual_seed(self.sampler.seed + self.sampler.epoch),
        )
        yield from loader

    def __iter__(self) -> Iterator[Any]:
        return self.iterate(0)
