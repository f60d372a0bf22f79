"""What a file given as a checkpoint or an export is, told by its leading bytes and its extension.

``eval`` and ``export`` take a training checkpoint (``last.pt``); ``predict`` takes a checkpoint or an export
(``.pt2``, TorchScript, ONNX, with its sidecar). A path of another kind is refused before anything reads it,
with one line that says what the file is and which command takes it, e.g. ``student.onnx is an ONNX export:
predict takes it; eval and export need the run's last.pt`` (never a Python exception's text).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHECKPOINT", "EXPORTS", "FileKind", "WrongFileError", "expect_kind", "file_kind"]

#: Kinds that ``torch.load`` reads (a ``torch.save`` zip, or the legacy pickle format).
CHECKPOINT = frozenset({"checkpoint", "legacy torch file"})
#: Kinds that ``featdistill predict`` runs besides checkpoints.
EXPORTS = frozenset({"torch.export program", "TorchScript", "ONNX export", "sidecar"})

_IMAGE_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
}


class WrongFileError(ValueError):
    """A path argument names a file of another kind than the command takes."""


@dataclass(frozen=True)
class FileKind:
    """``kind``: a short name (``checkpoint``, ``ONNX export``, ``YAML file``, ``missing``, ...); ``what``: the
    words that describe it (``an ONNX export``)."""

    kind: str
    what: str


def _zip_kind(path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return FileKind("zip", "a damaged zip archive (a truncated download or copy?)")
    inner = {name.split("/", 1)[-1] for name in names}
    if "archive_format" in inner or any(n.startswith("models/") for n in inner) or path.suffix == ".pt2":
        return FileKind("torch.export program", "a torch.export program (.pt2 export)")
    if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
        return FileKind("TorchScript", "a TorchScript export")
    if "data.pkl" in inner:
        return FileKind("checkpoint", "a torch checkpoint")
    return FileKind("zip", "a zip archive that is not a torch checkpoint")


def _text_kind(path: Path, head: bytes) -> FileKind:
    suffix = path.suffix.lower()
    text = head.decode("utf-8", "replace").lstrip()
    if suffix in (".yaml", ".yml"):
        return FileKind("YAML file", "a YAML file (a config?)")
    if suffix == ".json" or text.startswith(("{", "[")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return FileKind("JSON file", "a JSON file")
        if isinstance(data, dict) and "export" in data and "preprocessing" in data:
            return FileKind("sidecar", "an export's sidecar")
        return FileKind("JSON file", "a JSON file")
    if any(line.split("#")[0].rstrip().endswith(":") for line in text.splitlines()[:20]):
        return FileKind("YAML file", "a YAML file (a config?)")
    return FileKind("text file", "a text file")


def file_kind(path: str | Path) -> FileKind:
    """The kind of ``path``, from its first bytes and its extension (nothing in it is loaded or run)."""
    path = Path(path)
    if not path.exists():
        return FileKind("missing", "not found")
    if path.is_dir():
        if (path / "config.json").is_file():
            return FileKind("hf folder", "a Hugging Face save_pretrained folder")
        return FileKind("folder", "a folder")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return FileKind("empty", "an empty file (an interrupted write?)")
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith(b"\x80") and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return FileKind("legacy torch file", "a torch file in the legacy (pickle) format")
    for magic, what in _IMAGE_MAGIC.items():
        if head.startswith(magic):
            return FileKind("image", what)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and b"onnx" in head[:256].lower()):
        return FileKind("ONNX export", "an ONNX export")
    if path.suffix.lower() == ".safetensors" or (len(head) > 8 and head[8:9] == b"{"):
        return FileKind("safetensors", "a safetensors weight file")
    if b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return _text_kind(path, head)
    return FileKind("binary", "a file of no format featdistill reads")


def expect_kind(path: str | Path, accepted: frozenset[str], command: str) -> FileKind:
    """``path``'s kind if ``accepted`` holds it; else a :class:`WrongFileError` saying what it is and what
    ``command`` needs."""
    found = file_kind(path)
    if found.kind in accepted:
        return found
    name = Path(path)
    takes_exports = bool(accepted & EXPORTS)
    needs = (
        f"{command} takes a training checkpoint (the run's last.pt) or an export with its sidecar .json"
        if takes_exports
        else f"{command} needs the run's last.pt (a training checkpoint)"
    )
    if found.kind == "missing":
        raise WrongFileError(f"{name} not found; {needs}")
    if found.kind in ("folder", "hf folder"):
        last = name / "last.pt"
        hint = f"; did you mean {last}?" if last.is_file() else ""
        raise WrongFileError(f"{name} is {found.what}, not a file: {needs}{hint}")
    if found.kind in EXPORTS:
        raise WrongFileError(
            f"{name} is {found.what}: predict takes it; eval and export need the run's last.pt"
        )
    if found.kind == "YAML file":
        raise WrongFileError(f"{name} is {found.what}: give a config as the CONFIG argument; {needs}")
    if found.kind == "safetensors":
        raise WrongFileError(
            f"{name} is {found.what} (weights only, no card): set it as model.student_weights to train "
            f"from it; {needs}"
        )
    raise WrongFileError(f"{name} is {found.what}, not a checkpoint: {needs}")
