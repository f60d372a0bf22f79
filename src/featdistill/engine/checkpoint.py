"""Checkpoints: written atomically, read with ``weights_only=True``, RNG states included for exact resume."""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

#: The ``format`` of a training checkpoint (``last.pt``) written by the Trainer.
CHECKPOINT_FORMAT = "featdistill-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unsafe, corrupt, or written by another configuration."""


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
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
        if isinstance(err, OSError):
            kept = "the previous file is unchanged" if path.exists() else "nothing was written"
            hint = "free some disk space or " if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OSError(
                err.errno,
                f"cannot write {path}: {err.strerror or err} ({kept}); {hint}check output.dir and retry",
            ) from err
        raise
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` so that a crash at any moment leaves either the old or the new file.

    The data goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
    ``path`` (atomic on POSIX); the folder is fsynced so the rename itself survives a power loss. On any
    error (e.g. disk full) the temporary file is removed, the previous checkpoint stays intact and an
    ``OSError`` with a one-line message naming the file is raised.
    """
    return _write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(text: str, path: str | Path) -> Path:
    """``save_atomic`` for a small text file (run config, metrics, logs)."""
    return _write_atomic(path, lambda f: f.write(text.encode()))


def load_safely(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> Any:
    """Load a checkpoint or weight file with ``weights_only=True``; refuse anything that is not plain data.

    A file crafted to run code when unpickled is refused with a ``CheckpointError`` before anything in it
    is executed. ``mmap`` maps the tensors instead of reading them: cheap when only plain values are used.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint or weight file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors and plain values "
            f"({_unpickling_reason(err)}); nothing in it was run. Use a checkpoint written by featdistill "
            "or a plain state_dict"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read {path}: {first} (corrupt or truncated file?); use an intact checkpoint"
        ) from None


def _unpickling_reason(err: pickle.UnpicklingError) -> str:
    """The one informative line of a ``weights_only`` refusal, e.g. ``Unsupported global: GLOBAL os.system``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"Unsupported (?:global|operand):\s*(?:GLOBAL\s+)?\S+", text)
    if found:
        return found.group(0)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
