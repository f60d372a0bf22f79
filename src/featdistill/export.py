"""Exporting the plain student: state_dict, TorchScript or ONNX through ``torch.onnx``.

A model that takes one tensor (classifiers, segmenters) is traced; a model that takes a list of images
(torchvision detectors) is scripted for TorchScript, as torchvision supports, and exported to ONNX with a
fixed number of images (opset 17).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .engine import save_atomic


def export_student(
    student: nn.Module,
    fmt: Literal["state_dict", "torchscript", "onnx"],
    output: str | Path,
    example: torch.Tensor | list[torch.Tensor],
) -> Path:
    """Write ``student`` (in eval mode) to ``output`` in the given format; returns the path.

    ``example`` is one input: a batch tensor, or a list of image tensors for a detector.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    student = student.eval()
    takes_tensor = isinstance(example, torch.Tensor)
    if fmt == "state_dict":
        return save_atomic(student.state_dict(), output)
    if fmt == "torchscript":
        with torch.no_grad():
            module = (
                torch.jit.trace(student, example, strict=False) if takes_tensor else torch.jit.script(student)
            )
        module.save(str(output))
        return output
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx needs it to serialise)
        except ImportError as err:
            raise ImportError("ONNX export needs the onnx package: pip install 'featdistill[onnx]'") from err
        names: dict = {}
        if takes_tensor:
            names = {
                "input_names": ["input"],
                "output_names": ["output"],
                "dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}},
            }
        with torch.no_grad():
            torch.onnx.export(student, (example,), str(output), opset_version=17, dynamo=False, **names)
        return output
    raise ValueError(f"unknown export format {fmt!r}; choose state_dict, torchscript or onnx")
