"""Shared fixtures: determinism, few threads, the location of the real datasets and the tiny configs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: small models on a shared CPU run many times faster so than on two busy
    ones (``pytestmark = pytest.mark.usefixtures("one_thread")`` in a module of such tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real datasets beside the repository (skips the test when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


#: The smallest config of each built-in task, and of the user task of tests/plugins/fd_example_plugin.py, that
#: trains in seconds on CPU. Classification and regression need no files (synthetic data); segmentation and
#: detection read a generated tree (``data.root``, see tests/tiny_data.py).
TINY: dict[str, dict[str, Any]] = {
    "classification": {
        "task": "classification",
        "device": "cpu",
        "data": {
            "name": "synthetic",
            "root": "-",
            "limit": 64,
            "val_limit": 32,
            "batch_size": 16,
            "image_size": 16,
        },
        "model": {"student": "resnet8", "teacher": "resnet8", "num_classes": 4},
        "distill": {"method": "cwt", "alpha": 1e-3},
        "train": {"epochs": 1, "lr": 0.05, "log_every": 1},
        "output": {"tensorboard": False, "progress": False},
    },
    "segmentation": {
        "task": "segmentation",
        "device": "cpu",
        "data": {
            "name": "camvid",
            "val_split": "val",
            "batch_size": 2,
            "in_memory": False,
            "options": {"crop_size": 64},
        },
        "model": {
            "student": "pspnet",
            "num_classes": 11,
            "options": {"channels": 32, "backbone": "resnet18"},
        },
        "train": {"epochs": 1, "lr": 0.01},
        "output": {"tensorboard": False, "progress": False},
    },
    "detection": {
        "task": "detection",
        "device": "cpu",
        "data": {"name": "coco", "val_split": "val", "batch_size": 1},
        "model": {
            "student": "fasterrcnn",
            "options": {  # a 64-pixel detector with few proposals: a step in well under a second
                "backbone": "resnet18",
                "min_size": 64,
                "max_size": 64,
                "rpn_pre_nms_top_n_train": 50,
                "rpn_post_nms_top_n_train": 20,
                "rpn_pre_nms_top_n_test": 20,
                "rpn_post_nms_top_n_test": 10,
                "box_batch_size_per_image": 16,
                "box_score_thresh": 0.0,
            },
        },
        "train": {"epochs": 1, "lr": 0.001},
        "output": {"tensorboard": False, "progress": False},
    },
    "regression": {  # a method and a task of a plug-in: cosine_sum, regression (models small and large)
        "task": "regression",
        "plugins": ["fd_example_plugin"],
        "device": "cpu",
        "data": {"name": "synthetic", "root": "-", "limit": 64, "batch_size": 16},
        "model": {"student": "small", "teacher": "large"},
        "distill": {"method": "cosine_sum", "alpha": "auto"},
        "train": {"epochs": 2, "lr": 0.01, "clip_grad": 1.0, "log_every": 1},
        "output": {"tensorboard": False, "progress": False},
    },
}


def tiny_tree(
    out: Path | None = None,
    task: str = "classification",
    drop: Iterable[str] = (),
    base: dict[str, Any] | None = None,
    alone: bool = False,
    **sections: dict[str, Any] | None,
) -> dict[str, Any]:
    """``base`` (default ``TINY[task]``) less its dotted keys ``drop`` (so their defaults apply), with each of
    ``sections`` merged into its section (a section given as None is left out), the run written to ``out``;
    ``alone``: the student trained alone (no teacher, no ``distill`` section)."""
    tree = copy.deepcopy(TINY[task] if base is None else base)
    if alone:
        tree["model"].pop("teacher", None)
        tree.pop("distill", None)
    if out is not None:
        tree["output"]["dir"] = str(out)
    for key in drop:
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        del node[last]
    for name, values in sections.items():
        if values is None:
            tree.pop(name, None)
        else:
            tree[name] = {**tree.get(name, {}), **copy.deepcopy(values)}
    return tree


def image_folder_data(root: Path, **data: Any) -> dict[str, Any]:
    """The ``data`` section of an ImageFolder at ``root``, every image at its stored size (``data`` merged in)."""
    return {
        "name": "imagefolder",
        "root": str(root),
        "limit": None,
        "val_limit": None,
        "image_size": None,
        **data,
    }


def write_yaml(path: Path, tree: dict[str, Any]) -> Path:
    """``tree`` written to ``path`` as YAML in its own key order (``compare.arms``' first arm is the reference);
    returns ``path``."""
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., Path]:
    """A writer of tiny configs: ``tiny_config(out="run", name=None, **arguments)`` writes
    ``tiny_tree(tmp_path / out, **arguments)`` to ``tmp_path / name`` (default ``<out>.yaml``), returns its path."""

    def write(out: str | Path = "run", name: str | None = None, **arguments: Any) -> Path:
        folder = tmp_path / out
        return write_yaml(tmp_path / (name or f"{folder.name}.yaml"), tiny_tree(folder, **arguments))

    return write
