"""Exporting the plain student: ``torch.export`` program, TorchScript, ONNX, state_dict or safetensors.

A model that takes one tensor (classifiers, segmenters) is exported with ``torch.export`` (``.pt2``, the
default) or traced, at the size it was trained on, with batch, height and width dynamic where the model
allows it. Torchvision detectors take a list of images and have data-dependent shapes that
``torch.export`` cannot capture: they are scripted for TorchScript (their default) and exported to ONNX
with a fixed number of images, each of any height and width (opset 17).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .engine import save_atomic

Format = Literal["export", "torchscript", "onnx", "state_dict", "safetensors"]
FORMATS: tuple[str, ...] = ("export", "torchscript", "onnx", "state_dict", "safetensors")


def default_format(example: torch.Tensor | list[torch.Tensor]) -> Format:
    """``export`` for models that take one tensor; ``torchscript`` for detectors (a list of images)."""
    return "export" if isinstance(example, torch.Tensor) else "torchscript"


def _accepts_other_sizes(student: nn.Module, example: torch.Tensor) -> bool:
    """Whether the model runs on a larger height and width too (no fixed-size layer such as a flatten + fc)."""
    larger = torch.zeros(*example.shape[:-2], example.shape[-2] + 32, example.shape[-1] + 32)
    try:
        with torch.no_grad():
            student(larger.to(example))
    except Exception:  # shape errors surface as RuntimeError, ValueError or AssertionError, by model
        return False
    return True


def _torch_export(student: nn.Module, example: torch.Tensor, output: Path) -> None:
    from torch.export import Dim

    auto = getattr(Dim, "AUTO", None)  # torch >= 2.6; older versions export static shapes
    dims = ({0: auto, 2: auto, 3: auto},) if auto is not None else None  # dynamic unless the model fixes them
    with torch.no_grad():
        program = torch.export.export(student, (example,), dynamic_shapes=dims)
    torch.export.save(program, str(output))


def _safetensors(student: nn.Module, output: Path) -> None:
    try:
        from safetensors.torch import save_model
    except ImportError as err:
        raise ImportError(
            "safetensors export needs the safetensors package: pip install 'featdistill[hub]'"
        ) from err
    save_model(student, str(output))


def _write_onnx(
    student: nn.Module,
    example: Any,
    output: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    """``torch.onnx.export`` (TorchScript-based exporter, opset 17) with named inputs, outputs, dynamic axes."""
    with torch.no_grad():
        torch.onnx.export(
            student,
            (example,),
            str(output),
            opset_version=17,
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
        )


def _onnx_tensor_model(student: nn.Module, example: torch.Tensor, output: Path, dynamic_size: bool) -> None:
    """ONNX of a model that takes one batch tensor; outputs named as its dict keys (segmenters) or ``output``."""
    with torch.no_grad():
        produced = student(example)
    outputs = produced if isinstance(produced, dict) else {"output": produced}
    spatial = {2: "out_height", 3: "out_width"} if dynamic_size else {}
    axes = {name: {0: "batch", **(spatial if value.dim() == 4 else {})} for name, value in outputs.items()}
    axes["input"] = {0: "batch", **({2: "height", 3: "width"} if dynamic_size else {})}
    _write_onnx(student, example, output, ["input"], list(outputs), axes)


def _onnx_detector(student: nn.Module, images: list[torch.Tensor], output: Path) -> None:
    """ONNX of a detector: one input per image of any height and width; per image boxes, labels, scores."""
    with torch.no_grad():
        outputs = [f"{key}{i}" for i, detections in enumerate(student(images)) for key in detections]
    inputs = [f"image{i}" for i in range(len(images))]
    axes = {
        **{name: {1: "height", 2: "width"} for name in inputs},
        **{name: {0: "detections"} for name in outputs},
    }
    _write_onnx(student, images, output, inputs, outputs, axes)


def _onnx(student: nn.Module, example: torch.Tensor | list[torch.Tensor], output: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialise)
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install 'featdistill[onnx]'") from err
    if isinstance(example, torch.Tensor):
        if _accepts_other_sizes(student, example):
            try:
                _onnx_tensor_model(student, example, output, dynamic_size=True)
                return
            except torch.onnx.errors.OnnxExporterError:  # e.g. PSPNet's pyramid pooling needs fixed sizes
                pass
        _onnx_tensor_model(student, example, output, dynamic_size=False)
    else:
        _onnx_detector(student, example, output)


def export_student(
    student: nn.Module,
    fmt: Format,
    output: str | Path,
    example: torch.Tensor | list[torch.Tensor],
) -> Path:
    """Write ``student`` (in eval mode) to ``output`` in the given format; returns the path.

    ``example`` is one input at the training size: a batch tensor (of at least 2 images, so that the
    batch stays dynamic in ``torch.export``), or a list of image tensors for a detector.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    student = student.eval()
    takes_tensor = isinstance(example, torch.Tensor)
    if fmt == "state_dict":
        return save_atomic(student.state_dict(), output)
    if fmt == "safetensors":
        _safetensors(student, output)
    elif fmt == "export":
        if not takes_tensor:
            raise ValueError(
                f"{type(student).__name__} takes a list of images, which torch.export cannot capture "
                "(data-dependent detection shapes); use --format torchscript or onnx"
            )
        _torch_export(student, example, output)
    elif fmt == "torchscript":
        with torch.no_grad():
            module = (
                torch.jit.trace(student, example, strict=False) if takes_tensor else torch.jit.script(student)
            )
        module.save(str(output))
    elif fmt == "onnx":
        _onnx(student, example, output)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return output
