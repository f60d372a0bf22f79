"""Exporting the plain student: state_dict, TorchScript (traced) or ONNX through ``torch.onnx``."""

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
    example: torch.Tensor,
) -> Path:
    """Write ``student`` (in eval mode) to ``output`` in the given format; returns the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    student = student.eval()
    if fmt == "state_dict":
        return save_atomic(student.state_dict(), output)
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(student, example).save(str(output))
        return output
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx needs it to serialise)
        except ImportError as err:
            raise ImportError("ONNX export needs the onnx package: pip install 'featdistill[onnx]'") from err
        torch.onnx.export(
            student,
            (example,),
            str(output),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
        return output
    raise ValueError(f"unknown export format {fmt!r}; choose state_dict, torchscript or onnx")
