"""Atomic writes of everything featdistill writes for a user: a failure never leaves half a file or folder.

Every writer (checkpoints, logs, predictions, exports, reports) goes through this module. A file is written
to a temporary name in its own folder, flushed, fsynced and renamed over the old one (atomic on POSIX); a
group of files or folders (an export and its sidecars, a predictions folder) is written into a hidden staging
folder beside its destination under the same names, then each entry is moved into place. On any error the
temporary files are removed and what was there before stays as it was. A full disk (``ENOSPC``, or torch's
``inline_container.cc ... unexpected pos`` when it could not write) is one line naming the folder, the space
the write needs and the space left.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DiskFullError",
    "explain_write_error",
    "replace_path",
    "staged",
    "write_atomic",
    "write_text_atomic",
]

_FULL = (errno.ENOSPC, errno.EDQUOT)
#: What torch's zip writer says when the disk filled under it (the bytes it wanted were not written).
_TORCH_SHORT_WRITE = ("unexpected pos", "inline_container", "file write failed")


class WriteError(OSError):
    """A write that failed, the previous file kept; its text is the one-line message alone (no ``[Errno N]``)."""

    def __str__(self) -> str:
        return str(self.strerror)


class DiskFullError(WriteError):
    """No space left for a write; the message names the folder, the space needed and the space free."""


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _size(n: int) -> str:
    """``n`` bytes as a short human size (``512 B``, ``1.3 MB``)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def explain_write_error(
    err: BaseException, path: Path, needed: int | None = None, at_least: bool = False, about: bool = False
) -> BaseException:
    """The one-line error to raise for ``err``, raised while writing ``path`` (the old file kept).

    An ``OSError`` names the file and whether the previous one is unchanged; a full disk (``ENOSPC``, a quota,
    or torch's short-write ``RuntimeError`` when the folder has less free space than ``needed``) becomes a
    :class:`DiskFullError` that also names the folder, the space needed (``at_least``: a lower bound) and the
    space free (``about``: estimated by the previous file's size). Anything else is returned as it is.
    """
    folder = path.parent
    free = _free(folder)
    kept = "the previous file is unchanged" if path.exists() else "nothing was written"
    full = _maybe_full(err)
    if isinstance(err, RuntimeError) and full:  # torch's short write: a full disk only if the space lacks
        full = free is not None and needed is not None and free < needed
    if full:
        bound = "at least " if at_least else "about " if about else ""
        need = "" if needed is None else f"it needs {bound}{_size(needed)}, "
        have = "" if free is None else f"{_size(free)} free"
        return DiskFullError(
            errno.ENOSPC,
            f"cannot write {path}: No space left on device in {folder} ({need}{have}; {kept}); "
            "free some disk space there or write elsewhere, and retry",
        )
    if isinstance(err, OSError) and not isinstance(err, DiskFullError):
        return OSError(
            err.errno, f"cannot write {path}: {err.strerror or err} ({kept}); check the folder and retry"
        )
    return err


def _maybe_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in _FULL
    return isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_SHORT_WRITE)


class _Counter:
    """A file-like sink that only counts the bytes written to it (the size a failed write needed)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _needed(write: Callable[[BinaryIO], None]) -> int | None:
    counter = _Counter()
    try:
        write(counter)  # type: ignore[arg-type]
    except Exception:
        return None
    return counter.n


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path`` and rename it over ``path`` once complete.

    The data are flushed and fsynced before the rename, and the folder after it, so that a crash or a power
    loss at any moment leaves either the old file or the new one. On any error the temporary file is removed,
    the previous file stays intact, and an ``OSError`` is raised with one line naming the file (for a full
    disk, a :class:`DiskFullError` with the space needed: ``write`` is run again into a counting sink).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, (OSError, RuntimeError)):
            needed = _needed(write) if _maybe_full(err) else None
            explained = explain_write_error(err, path, needed)
            if explained is not err:
                raise explained from err
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(text: str, path: str | Path) -> Path:
    """:func:`write_atomic` of a text file (UTF-8)."""
    return write_atomic(path, lambda f: f.write(text.encode()))


def _check_replaceable(source: Path, target: Path) -> None:
    """Never replace a folder by a file, or a file by a folder (the user's other data)."""
    if target.exists() and source.is_dir() != target.is_dir():
        kind = "folder" if target.is_dir() else "file"
        raise WriteError(
            errno.EEXIST, f"cannot write {target}: a {kind} of that name is in the way; write elsewhere"
        )


def replace_path(source: Path, target: Path) -> None:
    """Move ``source`` (file or folder) to ``target``, replacing what is there: a file by one rename; a folder by
    moving the old one aside, renaming the new one in and then deleting the old one."""
    if target.exists() and source.is_dir() != target.is_dir():  # never replace a folder by a file, or back
        kind = "folder" if target.is_dir() else "file"
        raise WriteError(
            errno.EEXIST, f"cannot write {target}: a {kind} of that name is in the way; write elsewhere"
        )
    if source.is_dir() and target.exists():
        aside = target.with_name(f".{target.name}.old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
        os.replace(source, target)
        shutil.rmtree(aside)
    else:
        os.replace(source, target)


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """Yield where to write ``path`` (a file or a folder) and the files beside it with it (``<path>.json``,
    ``<stem>_drawn/``): ``path``'s name in a hidden staging folder next to it. When the block ends without
    error, each entry written there replaces its namesake beside ``path``; when it fails, the staging folder
    is deleted and nothing beside ``path`` has changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = path.parent / f".{path.name}.staged"
    shutil.rmtree(stage, ignore_errors=True)  # a staging folder left by a killed run
    stage.mkdir()
    try:
        yield stage / path.name
        entries = sorted(stage.iterdir())
        for entry in entries:  # all checked before any moves
            _check_replaceable(entry, path.parent / entry.name)
        for entry in entries:
            replace_path(entry, path.parent / entry.name)
    except BaseException as err:
        explained = err
        if isinstance(
            err, (OSError, RuntimeError)
        ):  # only a full disk is told apart: other errors are the caller's
            written, previous = _tree_size(stage), _tree_size(path)
            explained = explain_write_error(
                err, path, written or previous or None, at_least=bool(written), about=not written
            )
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(explained, DiskFullError):
            raise explained from err
        raise
    shutil.rmtree(stage, ignore_errors=True)
    _fsync_dir(path.parent)
