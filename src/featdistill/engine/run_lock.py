"""One process per run folder: an OS lock on ``<folder>/.lock`` held for the whole run.

Two runs writing the same ``log.csv``, ``last.pt`` and ``metrics.json`` would leave a silent mix, so the
second one is refused with :class:`RunFolderBusyError`, naming the folder and the holder's pid. The lock
is ``fcntl.flock``: the kernel drops it when the holder exits in any way, SIGKILL included, so a killed
run's folder can be resumed at once (its ``.lock`` file, with the dead pid, is simply taken over).
Forked children (DataLoader workers) close their inherited copy of the lock file right after the fork,
so they never keep a dead run's folder locked. Under torchrun only global rank 0 takes the lock, for
all ranks. Where ``fcntl`` does not exist (Windows) nothing is locked and a warning says so.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunFolderBusyError", "run_lock"]

LOCK_NAME = ".lock"
_held: set[int] = set()  # descriptors of the locks this process holds, closed in forked children


class RunFolderBusyError(RuntimeError):
    """Another process holds the run folder's lock."""


def _close_in_child() -> None:
    for fd in _held:
        os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _global_rank() -> int:
    """The process's rank under torchrun (``RANK``), 0 when started alone; known before any process group."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file (``unknown`` if it has not written it yet)."""
    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _acquire(folder: Path) -> int:
    """Lock ``folder/.lock`` without waiting; returns its descriptor with this process's pid written in."""
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderBusyError(
                f"{os.fspath(folder)} is in use by another featdistill run ({holder}); wait for it to end "
                "or set another output.dir"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed this file as it finished: lock the path's new file instead
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, *, enabled: bool | None = None) -> Iterator[Path | None]:
    """Hold ``<folder>/.lock`` while the block runs; yields the lock file's path.

    ``folder`` is created if needed, and removed again at the end if this call created it and nothing
    else was written to it (a run that failed at start leaves no empty folder). ``enabled=None`` locks
    only on global rank 0, so the processes of one torchrun job share rank 0's lock; ``False`` skips
    locking (yields ``None``). Raises :class:`RunFolderBusyError` at once, without waiting, when another
    process, or another ``run_lock`` in this one, holds the folder.
    """
    if enabled is None:
        enabled = _global_rank() == 0
    if not enabled:
        yield None
        return
    if fcntl is None:
        warnings.warn(
            f"no fcntl on this platform: {os.fspath(folder)} is not locked; make sure no other run "
            "writes to the same output.dir",
            stacklevel=3,
        )
        yield None
        return
    folder = Path(folder).absolute()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # innermost first
    fd = _acquire(folder)
    _held.add(fd)
    try:
        yield folder / LOCK_NAME
    finally:
        _held.discard(fd)
        try:
            os.unlink(folder / LOCK_NAME)  # still locked: a process that opened it retries on the new file
            for path in created:
                os.rmdir(path)  # only if empty
        except OSError:
            pass
        finally:
            os.close(fd)
