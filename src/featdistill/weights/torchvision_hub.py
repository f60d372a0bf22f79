"""torchvision weights by name (``torchvision`` / ``torchvision:<ENUM>``) from torch's cache, downloaded once.

The file goes where torchvision puts it (``$TORCH_HOME/hub/checkpoints/<file name of the URL>``), so
weights cached by torchvision itself are used without network. The download has a short socket timeout
and is never attempted with ``HF_HUB_OFFLINE`` set; either failure is one line naming the file expected.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torchvision.models import WeightsEnum

from ..suggest import did_you_mean
from .errors import WeightsError
from .files import load_state_dict_file

TORCHVISION = "torchvision"
DOWNLOAD_TIMEOUT_S = 15.0


def offline_requested() -> bool:
    """Whether the user asked for no network (``HF_HUB_OFFLINE``, honoured for every weights source)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def torchvision_weights(model_name: str, spec: str) -> WeightsEnum:
    """The weights enum member that ``torchvision`` / ``torchvision:<ENUM>`` names for ``model_name``."""
    try:
        weights_enum = torchvision.models.get_model_weights(model_name)
    except (ValueError, KeyError):
        raise WeightsError(
            f"weights {spec!r} need a torchvision model name, and {model_name!r} is not one "
            "(see torchvision.models.list_models()); use a local weights file instead"
        ) from None
    member = spec.partition(":")[2].strip().upper() or "DEFAULT"
    if member not in weights_enum.__members__:
        hint = did_you_mean(member, weights_enum.__members__, prefix=f"{TORCHVISION}:")
        raise WeightsError(f"unknown torchvision weights {spec!r} for {model_name}{hint}")
    return weights_enum[member]


def cached_path(weights: WeightsEnum) -> Path:
    """Where torchvision keeps (or will keep) the file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _download(weights: WeightsEnum, path: Path) -> None:
    label = f"{type(weights).__name__}.{weights.name}"
    where = (
        f"expected {path}: download {weights.url} to that path on a machine with network "
        "(TORCH_HOME sets the folder), or give a local weights file"
    )
    if offline_requested():
        raise WeightsError(f"torchvision weights {label} are not cached and HF_HUB_OFFLINE is set; {where}")
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib has no timeout of its own: never hang
    try:
        torch.hub.download_url_to_file(weights.url, str(path), progress=sys.stderr.isatty())
    except OSError as err:  # URLError, timeouts, refused connections, full disks
        reason = " ".join(str(getattr(err, "reason", None) or err).split()) or type(err).__name__
        raise WeightsError(f"cannot download torchvision weights {label} ({reason}); {where}") from None
    finally:
        socket.setdefaulttimeout(previous)


def torchvision_state_dict(model_name: str, spec: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict of the torchvision weights ``spec`` for ``model_name``, and the file it was read from."""
    weights = torchvision_weights(model_name, spec)
    path = cached_path(weights)
    if not path.is_file():
        _download(weights, path)
    return load_state_dict_file(path), str(path)
