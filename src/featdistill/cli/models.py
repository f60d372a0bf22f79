"""The ``models`` command: the model names each task accepts for ``model.student`` and ``model.teacher``.

One name per line followed by where it comes from, so that ``featdistill models | grep resnet`` finds a name.
"""

from __future__ import annotations

import argparse

TASKS = ("classification", "detection", "segmentation")

_HUB_FORMS = [
    ("timm:<name>", "any timm model, e.g. timm:resnet50 (pip install 'featdistill[timm]')"),
    (
        "hf:<repo id or folder>",
        "a Hugging Face image classifier (transformers AutoModelForImageClassification)",
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``models`` command's arguments."""
    parser.add_argument("--task", choices=TASKS, help="list one task's models only (default: every task)")


def _classification() -> list[tuple[str, list[tuple[str, str]]]]:
    import torchvision

    from ..tasks.classification.models import list_classifiers

    from_torchvision = set(torchvision.models.list_models(module=torchvision.models))
    rows = [
        (name, "torchvision" if name in from_torchvision else "featdistill") for name in list_classifiers()
    ]
    return [("classification: model.student, model.teacher", rows + _HUB_FORMS)]


def _detection() -> list[tuple[str, list[tuple[str, str]]]]:
    try:
        from ..tasks.detection.models import BACKBONES, DETECTORS
    except ImportError as err:
        raise ImportError(
            f"detection models need pycocotools ({err}): pip install 'featdistill[detection]'"
        ) from None
    return [
        (
            "detection: model.student, model.teacher",
            [(name, f"torchvision {cls.__name__}") for name, cls in DETECTORS.items()],
        ),
        (
            "detection backbones: model.options.backbone (one side: model.options.student.backbone)",
            [(name, "torchvision, with an FPN") for name in BACKBONES],
        ),
    ]


def _segmentation() -> list[tuple[str, list[tuple[str, str]]]]:
    from ..tasks.segmentation.models import SEGMENTERS

    rows = [(name, f"backbones (model.options.backbone): {', '.join(b)}") for name, b in SEGMENTERS.items()]
    return [("segmentation: model.student, model.teacher", rows)]


_CATALOGUES = {"classification": _classification, "detection": _detection, "segmentation": _segmentation}


def catalogue(task: str | None = None) -> str:
    """The listing printed by ``featdistill models``: sections of ``name  origin`` lines."""
    lines = []
    for name in [task] if task else TASKS:
        for title, rows in _CATALOGUES[name]():
            width = max(len(row[0]) for row in rows) + 2
            lines += [f"# {title}", *(f"{model.ljust(width)}{origin}" for model, origin in rows)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> None:
    """Print the model names."""
    print(catalogue(args.task), end="")
