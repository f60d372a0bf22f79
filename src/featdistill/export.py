"""Exporting the plain student: ``torch.export`` program, TorchScript, ONNX, state_dict, safetensors or a
Hugging Face ``save_pretrained`` folder (``hf``, :mod:`featdistill.hf_export`).

A model that takes one tensor (classifiers, segmenters) is exported with ``torch.export`` (``.pt2``, the
default) or traced, at the size it was trained on, with batch, height and width dynamic where the model
allows it. Torchvision detectors take a list of images and have data-dependent shapes that
``torch.export`` cannot capture: they are scripted for TorchScript (their default) and exported to ONNX
with a fixed number of images, each of any height and width (opset 17).

With the student card (:mod:`featdistill.card`), every export also writes the sidecar ``<output>.json`` (the
card plus what the file takes as input) and a short model card ``<output>.md``; ONNX files carry the
sidecar in their ``metadata_props`` too. The file (or ``hf`` folder) and its sidecars are written together
into a staging folder and moved into place only once all are complete (:func:`featdistill.atomic.staged`): a
failed export leaves the previous one as it was. ``include_preprocessing`` bakes the card's normalisation into the
graph, so the exported model takes uint8 NCHW pixels (detectors: a list of uint8 ``[3, H, W]`` images)
instead of normalised floats.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .atomic import staged
from .card import sidecar_path
from .tasks.preprocess import ImagesPixelInput, PixelInput
from .tasks.registry import task_class

Format = Literal["export", "torchscript", "onnx", "state_dict", "safetensors", "hf"]
FORMATS: tuple[str, ...] = ("export", "torchscript", "onnx", "state_dict", "safetensors", "hf")


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


_SERIALIZED_TARGET = re.compile(r"target=(?P<target>[\w.]+)")


def pt2_refusal(name: str, err: Exception) -> str:
    """One line for a program that ``torch.export`` captured but cannot save (e.g. the ``math.ceil`` of a
    feature-map size in ``pspnet`` on a timm ConvNeXt): the model, the node, what to do."""
    found = _SERIALIZED_TARGET.search(str(err))
    node = f"a {found['target']} node" if found else "a node"
    return (
        f"{name} cannot be saved as a torch.export program (.pt2): its graph holds {node} that torch cannot "
        "serialise; use --format torchscript, which predict runs as well (docs/tasks/segmentation.md, Export "
        "limits)"
    )


def _torch_export(student: nn.Module, example: torch.Tensor, output: Path, name: str | None = None) -> None:
    """A ``torch.export`` program of ``student``; one that cannot be saved stops with one line
    (:func:`pt2_refusal`) naming it as ``name`` (the card's ``model.student``; else its class)."""
    from torch.export import Dim

    auto = getattr(Dim, "AUTO", None)  # torch >= 2.6; older versions export static shapes
    dims = ({0: auto, 2: auto, 3: auto},) if auto is not None else None  # dynamic unless the model fixes them
    with torch.no_grad():
        program = torch.export.export(student, (example,), dynamic_shapes=dims)
    try:
        torch.export.save(program, str(output))
    except Exception as err:
        if type(err).__name__ != "SerializeError":  # torch's class lives in the private torch._export
            raise
        raise ValueError(pt2_refusal(name or type(student).__name__, err)) from err


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


@contextmanager
def _stdout_held() -> Iterator[None]:
    """Hold what is written to the process's stdout (file descriptor 1) within; written out only on success.

    torch.onnx's TorchScript exporter turns its C++ log on for every export (it tests the function
    ``_jit_is_onnx_log_enabled`` instead of calling it) and prints the whole graph, thousands of lines, when a
    conversion fails: that graph is dropped, and the failure is told in one line (:func:`onnx_refusal`).
    """
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        held.seek(0)
        os.write(1, held.read())


#: torch.onnx's words for what it cannot convert -> ours.
_ONNX_REASONS = {
    "output size that are not factor of input size": "its pyramid pooling pools the feature map to bins that do "
    "not divide it at this size, which ONNX cannot express",
    "input size not accessible": "its adaptive pooling reads a feature-map size that the ONNX exporter cannot "
    "follow",
}
_UNSUPPORTED_OP = re.compile(r"operator '(?P<op>[^']+)' to ONNX opset version (?P<opset>\d+)")


def onnx_refusal(name: str, example: torch.Tensor, err: Exception) -> str:
    """One line for a model that torch.onnx cannot convert: the model, the reason in our words, what to do."""
    text = " ".join(str(err).split())
    op = _UNSUPPORTED_OP.search(text)
    if op is not None:
        reason = f"it uses {op['op']}, which has no ONNX opset {op['opset']} form"
    else:
        found = (ours for theirs, ours in _ONNX_REASONS.items() if theirs in text)
        reason = next(found, f"torch.onnx: {text.split('. ')[0][:160]}")
    return (
        f"{name} cannot be exported to ONNX at {example.shape[-2]}x{example.shape[-1]}: {reason}; use "
        "--format torchscript or the default --format export (.pt2), which predict runs as well "
        "(docs/tasks/segmentation.md, Export limits)"
    )


def _onnx(
    student: nn.Module, example: torch.Tensor | list[torch.Tensor], output: Path, name: str | None = None
) -> None:
    """ONNX of ``student``; a model torch.onnx cannot convert stops with one line (:func:`onnx_refusal`)
    naming it as ``name`` (the card's ``model.student``; else its class)."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialise)
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install 'featdistill[onnx]'") from err
    if not isinstance(example, torch.Tensor):
        _onnx_detector(student, example, output)
        return
    try:
        with _stdout_held():
            if _accepts_other_sizes(student, example):
                try:
                    _onnx_tensor_model(student, example, output, dynamic_size=True)
                    return
                except torch.onnx.errors.OnnxExporterError:  # e.g. PSPNet's pyramid pooling: fixed sizes only
                    pass
            _onnx_tensor_model(student, example, output, dynamic_size=False)
    except torch.onnx.errors.OnnxExporterError as err:
        raise ValueError(onnx_refusal(name or type(student).__name__, example, err)) from err


def with_pixel_input(
    student: nn.Module, card: dict[str, Any], example: torch.Tensor | list[torch.Tensor]
) -> tuple[nn.Module, torch.Tensor | list[torch.Tensor]]:
    """``student`` taking uint8 pixels (the card's normalisation inside), and ``example`` as such pixels."""
    bits = int(card["preprocessing"].get("bits", 8))
    if bits != 8:
        raise ValueError(
            f"--include-preprocessing makes the model take uint8 pixels, but this student was trained on "
            f"{bits}-bit pixels (data.bits: {bits}); export without it and normalise with the sidecar's mean/std"
        )
    if isinstance(example, torch.Tensor):
        pixels = torch.randint(0, 256, tuple(example.shape), dtype=torch.uint8)
        return PixelInput(student, card).eval(), pixels
    images = [torch.randint(0, 256, tuple(image.shape), dtype=torch.uint8) for image in example]
    return ImagesPixelInput(student).eval(), images


def export_student(
    student: nn.Module,
    fmt: Format,
    output: str | Path,
    example: torch.Tensor | list[torch.Tensor],
    card: dict[str, Any] | None = None,
    include_preprocessing: bool = False,
) -> Path:
    """Write ``student`` (in eval mode) to ``output`` in the given format; returns the path.

    ``example`` is one input at the training size: a batch tensor (of at least 2 images, so that the
    batch stays dynamic in ``torch.export``), or a list of image tensors for a detector. With ``card``
    (the student card) the sidecar ``<output>.json`` and the model card ``<output>.md`` are written too;
    ``include_preprocessing`` (needs ``card``) exports a model that takes uint8 pixels. A model with an
    ``export_formats`` attribute is exported to those formats only (its ``export_note`` says why).
    """
    formats = getattr(student, "export_formats", None)  # a model that exports to some formats only says so
    if formats is not None and fmt not in formats:
        raise ValueError(
            f"{type(student).__name__} exports as {' or '.join(formats)} only ({student.export_note}); "
            f"--format {formats[0]}"
        )
    output = Path(output)
    student = student.eval()
    if include_preprocessing:
        if card is None:
            raise ValueError("include_preprocessing needs the student card (the mean/std to bake in)")
        if fmt in ("state_dict", "safetensors", "hf"):
            holds = "a model and an image processor that normalises" if fmt == "hf" else "weights only"
            raise ValueError(
                f"--include-preprocessing bakes the normalisation into a graph (export, torchscript, onnx); "
                f"--format {fmt} holds {holds}: drop one of the two"
            )
        student, example = with_pixel_input(student, card, example)
    if fmt == "hf" and card is None:
        raise ValueError(
            "--format hf needs the student card (the class names and the image processor's steps)"
        )
    with staged(
        output
    ) as target:  # the file and its sidecars replace the previous ones only once all are written
        _write(student, fmt, target, example, card)
        if card is not None:
            sidecar = describe_export(card, target, fmt, include_preprocessing, example)
            if fmt == "onnx":
                _add_onnx_metadata(target, sidecar)
            sidecar_path(target).write_text(json.dumps(sidecar, indent=2))
            target.with_name(f"{target.name}.md").write_text(model_card(sidecar))
    return output


def _write(
    student: nn.Module,
    fmt: Format,
    output: Path,
    example: torch.Tensor | list[torch.Tensor],
    card: dict[str, Any] | None,
) -> None:
    takes_tensor = isinstance(example, torch.Tensor)
    name = card["model"]["student"] if card is not None else None
    if fmt == "state_dict":
        torch.save(student.state_dict(), output)
    elif fmt == "hf":
        from .hf_export import save_hf

        save_hf(student, card or {}, output)
    elif fmt == "safetensors":
        _safetensors(student, output)
    elif fmt == "export":
        if not takes_tensor:
            raise ValueError(
                f"{type(student).__name__} takes a list of images, which torch.export cannot capture "
                "(data-dependent detection shapes); use --format torchscript or onnx"
            )
        _torch_export(student, example, output, name)
    elif fmt == "torchscript":
        with torch.no_grad():
            module = torch.jit.trace(student, example, strict=False) if takes_tensor else _script(student)
        module.save(str(output))
    elif fmt == "onnx":
        _onnx(student, example, output, name)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _script(student: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of a detector; one line when its code cannot be scripted (a transformers detector)."""
    try:
        return torch.jit.script(student)
    except (
        Exception
    ) as err:  # the scripting compiler raises many kinds: OSError, RuntimeError, NotSupportedError
        first = " ".join(str(err).split())[:160]
        raise ValueError(
            f"{type(student).__name__} cannot be scripted for TorchScript ({first}); use --format onnx"
        ) from None


def describe_export(
    card: dict[str, Any],
    output: Path,
    fmt: str,
    include_preprocessing: bool,
    example: torch.Tensor | list[torch.Tensor],
) -> dict[str, Any]:
    """The sidecar: the card plus ``export`` (file, format, and the input the file takes)."""
    dtype = "uint8" if include_preprocessing else "float32"
    if isinstance(example, torch.Tensor):
        entry = {"name": "input", "layout": "NCHW", "shape": ["batch", *example.shape[1:]]}
    else:  # a detector: a list of images, each of any size
        entry = {"name": "images", "layout": "list of CHW", "shape": [example[0].shape[0], "height", "width"]}
    preprocessing = card["preprocessing"]
    if include_preprocessing:  # the file normalises: the sidecar says so in both places
        preprocessing = {**preprocessing, "normalize_in_model": True}
    return {
        **card,
        "preprocessing": preprocessing,
        "export": {
            "file": output.name,
            "format": fmt,
            "include_preprocessing": include_preprocessing,
            "input": {**entry, "dtype": dtype, "shape": [*map(_plain_dim, entry["shape"])]},
        },
    }


def _plain_dim(dim: Any) -> Any:
    return dim if isinstance(dim, str) else int(dim)


def _add_onnx_metadata(output: Path, sidecar: dict[str, Any]) -> None:
    """Each top-level sidecar key as an ONNX ``metadata_props`` entry (JSON text), ``featdistill`` = all of it."""
    import onnx

    model = onnx.load(str(output))
    entries = {"featdistill": sidecar, **sidecar}
    del model.metadata_props[:]
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(output))


_CALLS = {
    "export": "program = torch.export.load('{file}'); output = program.module()({input})",
    "torchscript": "model = torch.jit.load('{file}'); output = model({input})",
    "onnx": "session = onnxruntime.InferenceSession('{file}'); output = session.run(None, {{'{name}': {input}}})",
    "state_dict": "student.load_state_dict(featdistill.engine.load_safely('{file}')); output = student({input})",
    "safetensors": "safetensors.torch.load_model(student, '{file}'); output = student({input})",
    "hf": "model = transformers.AutoModelForImageClassification.from_pretrained('{file}'); "
    "output = model(pixel_values={input}).logits  # or transformers.pipeline('image-classification', '{file}')",
}


def model_card(sidecar: dict[str, Any]) -> str:
    """A short Markdown model card: what the file is, how it was made, how to call it."""
    export, p, model = sidecar["export"], sidecar["preprocessing"], sidecar["model"]
    classes = sidecar["classes"]
    shown = ", ".join(classes[:10]) + (f", ... ({len(classes)} in all)" if len(classes) > 10 else "")
    lines = [
        f"# {export['file']}",
        "",
        f"A {sidecar['task']} student, `{model['student']}` with {model['num_classes']} outputs "
        f"({shown}), exported by featdistill {sidecar['versions']['featdistill']} "
        f"(torch {sidecar['versions']['torch']}) as `{export['format']}`.",
        "",
        "## How it was made",
        "",
    ]
    d = sidecar.get("distillation")
    if d:
        pairs = "; ".join(f"{s} <- {t} ({m})" for s, t, m in d["pairs"])
        alpha = ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} default" for k, v in d["alpha"].items())
        lines.append(
            f"Distilled from the teacher `{d['teacher']}` with {d['method']}: {pairs}; alpha {alpha}."
        )
    else:
        lines.append("Trained without a teacher (a plain student).")
    metric = sidecar.get("metric")
    if metric:
        lines.append(f"Last evaluation: {metric['name']} {metric['value']:.4g} on `{metric['split']}`.")
    entry = export["input"]
    if export["include_preprocessing"]:
        how = f"{entry['dtype']} pixels as decoded (0-255), normalisation inside"
    elif p.get("normalize_in_model"):
        how = "float32 pixels in [0, 1]; the detector resizes and normalises inside"
    elif p.get("mean") is None:  # a task that describes no normalisation (TaskBase.card_fields)
        how = "float32, as the task's training feeds the student (the card names no normalisation)"
    else:
        how = (
            f"float32 `(pixels / 255 - mean) / std` with mean {_rounded(p['mean'])}, std {_rounded(p['std'])}"
        )
    resize = _resize_words(p)
    bits = f"{p.get('bits', 8)}-bit {p.get('color_mode', 'RGB')} images (gray is repeated to 3 channels)"
    example = "pixels" if export["include_preprocessing"] else "x"
    call = _CALLS[export["format"]].format(file=export["file"], name=entry["name"], input=example)
    outputs = task_class(sidecar["task"]).describe_outputs(sidecar)  # the task's own words
    lines += [
        "",
        "## How to call it",
        "",
        f"Input `{entry['name']}`: {entry['layout']} {entry['shape']}, {how}; {resize}; from {bits}.",
        f"Output: {outputs}. Everything above, as data: `{export['file']}.json`.",
        "",
        "```python",
        call,
        "```",
        "",
    ]
    return "\n".join(lines)


def _resize_words(p: dict[str, Any]) -> str:
    size = p.get("input_size")
    if size is None:
        return "any image size"
    shown = f"{size[0]}x{size[1]} (H x W)"
    if p.get("resize") == "exact":
        return f"resize every image to {shown} first"
    if p.get("resize") == "center_crop":
        return (
            f"resize the short side to {round(min(size) / p['crop_fraction'])}, then crop the centred {shown}"
        )
    return f"any image size (trained at {shown})"


def _rounded(values: list[float] | None) -> list[float] | None:
    return None if values is None else [round(v, 4) for v in values]
