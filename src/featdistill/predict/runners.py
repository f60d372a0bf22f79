"""The exported student behind ``featdistill predict``: a ``torch.export`` program, TorchScript or ONNX.

Each runner is called like the eager student and returns what it returns: a logits tensor (classifiers), a
dict of tensors (segmenters: ``out``, ``aux``), or per image a dict of ``boxes``, ``labels``, ``scores``
(detectors, given a list of images). ONNX files run in onnxruntime on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["OnnxStudent", "load_exported"]

_PER_IMAGE = re.compile(r"^(?P<key>.*?)(?P<index>\d+)$")  # detector ONNX names: image0, boxes0, labels0, ...


class OnnxStudent:
    """An ONNX student in an onnxruntime session, called on torch tensors (or a list of images)."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(
                f"{path}: running ONNX files needs onnxruntime: pip install 'featdistill[onnx]'"
            ) from None
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.outputs = [node.name for node in self.session.get_outputs()]

    def __call__(self, images: Tensor | list[Tensor]) -> Any:
        if isinstance(images, Tensor):
            values = self.session.run(None, {self.inputs[0]: images.cpu().numpy()})
            tensors = [torch.from_numpy(value) for value in values]
            return tensors[0] if self.outputs == ["output"] else dict(zip(self.outputs, tensors))
        return [
            found
            for start in range(0, len(images), len(self.inputs))
            for found in self._detect(images[start:])
        ]

    def _detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """One call of a detector exported for ``len(self.inputs)`` images (a short last group is padded)."""
        group = images[: len(self.inputs)]
        padded = group + [group[-1]] * (len(self.inputs) - len(group))
        values = self.session.run(
            None, {name: image.cpu().numpy() for name, image in zip(self.inputs, padded)}
        )
        found: list[dict[str, Tensor]] = [{} for _ in padded]
        for name, value in zip(self.outputs, values):
            match = _PER_IMAGE.match(name)
            if match is None:
                raise ValueError(f"ONNX detector output {name!r} is not named <key><image index>")
            found[int(match["index"])][match["key"]] = torch.from_numpy(value)
        return found[: len(group)]


def _scripted_detections(module: torch.jit.ScriptModule) -> Callable[[list[Tensor]], Any]:
    """A scripted torchvision detector returns ``(losses, detections)``; predict wants the detections."""

    def run(images: Any) -> Any:
        out = module(images)
        return out[1] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list) else out

    return run


def load_exported(path: str | Path, fmt: str) -> Callable[[Any], Any]:
    """The student in ``path``, written by ``featdistill export --format fmt`` (export, torchscript, onnx)."""
    if fmt == "export":
        return torch.export.load(str(path)).module()
    if fmt == "torchscript":
        return _scripted_detections(torch.jit.load(str(path), map_location="cpu").eval())
    if fmt == "onnx":
        return OnnxStudent(path)
    raise ValueError(
        f"{path} is a {fmt!r} export; predict runs export (.pt2), torchscript and onnx files, or a checkpoint"
    )
