"""Decode many files in worker processes, behind a progress bar, with results in input order.

The in-memory paths of the tasks decode whole splits up front; one process per core makes that as many
times faster, and the bar (images/s, time left) says what the run is doing meanwhile. Results come back in
the order of the inputs, so the caller fills its preallocated tensors exactly as a serial loop would.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.pool import AsyncResult
from typing import Any, TypeVar

import torch
from tqdm import tqdm

__all__ = ["default_workers", "map_in_workers", "single_threaded"]

T = TypeVar("T")
R = TypeVar("R")
_CHUNK = 32  # items per task sent to a worker: amortises the IPC, keeps the bar moving
_SERIAL_BELOW = 64  # fewer items than this are decoded in this process (starting workers costs more)
_fn: Callable[[Any], Any] | None = None  # the function of this worker process (set by _start)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block.

    Decoding and copying one image are too small to split over threads: with several, OpenMP's threads spin
    between them, and on a busy machine a 128 px JPEG then costs 4-7 ms of CPU instead of 0.3-0.5 ms
    (measured: ``benchmarks/results/scale.md``).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _start(fn: Callable[[Any], Any]) -> None:
    global _fn
    _fn = fn
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def _run_chunk(items: Sequence[Any]) -> list[Any]:
    assert _fn is not None
    return [_fn(item) for item in items]


def map_in_workers(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    desc: str = "decoding",
    progress: bool = True,
) -> Iterator[R]:
    """``fn(item)`` for each item, in order, computed by ``workers`` processes (None: every core).

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one) and return
    something cheap to pickle (NumPy arrays, not tensors). An exception in ``fn`` is raised here.
    """
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(
        total=len(items),
        unit="img",
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=1.0,
        leave=False,
        delay=1.0,  # quick decodes (small splits) print nothing
    )
    with bar, single_threaded():  # the serial decodes, and the copies of the workers' results
        if workers == 1 or len(items) < _SERIAL_BELOW:
            for item in items:
                yield fn(item)
                bar.update()
            return
        chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        workers = min(workers, len(chunks))
        with multiprocessing.get_context().Pool(workers, _start, (fn,)) as pool:
            pending: deque[AsyncResult] = deque()
            for chunk in chunks:  # at most 2 chunks a worker in flight: results never pile up in memory
                pending.append(pool.apply_async(_run_chunk, (chunk,)))
                if len(pending) >= 2 * workers:
                    yield from _collect(pending.popleft(), bar)
            while pending:
                yield from _collect(pending.popleft(), bar)


def _collect(task: AsyncResult, bar: tqdm) -> list[Any]:
    results = task.get()
    bar.update(len(results))
    return results
