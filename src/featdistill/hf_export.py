"""``featdistill export --format hf``: a Hugging Face student as a ``save_pretrained`` folder.

A student built from ``hf:<repo or dir>`` is stored by featdistill as the wrapper's state (``hf.*`` keys),
which ``from_pretrained`` cannot read. This writes the transformers model itself, with the class names of
the student card as ``id2label``, and an image processor config that holds the card's preprocessing
(resize to the training size, scale to [0, 1], normalise by its mean and std), so that
``transformers.pipeline("image-classification", model=folder)`` takes a PIL image as it is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from .weights.huggingface import quiet_transformers

__all__ = ["save_hf"]


def save_hf(student: nn.Module, card: dict[str, Any], folder: str | Path) -> Path:
    """Write ``student`` (an ``hf:`` classifier) and its image processor to ``folder``; returns the folder."""
    model = getattr(student, "hf", None)
    if card["task"] != "classification" or not hasattr(model, "save_pretrained"):
        raise ValueError(
            f"--format hf writes Hugging Face image classifiers (model.student: hf:...); this student is "
            f"{card['model']['student']!r} ({card['task']}): use --format export, onnx or torchscript"
        )
    steps = card["preprocessing"]
    if steps["bits"] != 8:
        raise ValueError(
            f"--format hf: the student was trained on {steps['bits']}-bit images, but Hugging Face image "
            "processors read 8-bit images; use --format onnx or export"
        )
    try:
        from transformers import ViTImageProcessor
    except ImportError:
        raise ImportError("--format hf needs transformers: pip install 'featdistill[hub]'") from None
    from PIL import Image

    folder = Path(folder)
    model = copy.copy(model)  # the written config names the classes; the caller's model stays as it was
    model.config = copy.deepcopy(model.config)
    model.config.id2label = dict(enumerate(card["classes"]))
    model.config.label2id = {name: index for index, name in enumerate(card["classes"])}
    with quiet_transformers():
        model.save_pretrained(folder)
    size = steps["input_size"]
    processor = ViTImageProcessor(  # resize (bilinear) + rescale + normalise: the card's steps, nothing else
        do_resize=size is not None,
        size={"height": size[0], "width": size[1]} if size is not None else None,
        resample=Image.Resampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(steps["mean"]),
        image_std=list(steps["std"]),
    )
    processor.save_pretrained(folder)
    return folder
