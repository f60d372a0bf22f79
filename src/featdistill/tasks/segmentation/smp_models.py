"""``smp:<Architecture>/<encoder>``: segmentation_models_pytorch segmenters (extra ``[seg]``).

Every architecture the library has (``Unet``, ``UnetPlusPlus``, ``FPN``, ``PSPNet``, ``DeepLabV3``,
``DeepLabV3Plus``, ``Linknet``, ``MAnet``, ``PAN``, ``UPerNet``, ``Segformer``, ``DPT``) on any of its encoders,
``tu-<timm name>`` encoders included. The model returns its logits tensor at the input size; its layers are
tapped by their own names (``encoder.layer4``, ``decoder``, ...). ``encoder_weights`` names the library's
pretrained encoder weights (``imagenet``, ...; ``true`` for a ``tu-`` encoder's timm weights), read from the
Hugging Face cache and downloaded once.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ...suggest import did_you_mean
from ...weights.huggingface import from_hub, timm_pretrained

__all__ = ["SEG_EXTRA", "build_smp", "smp_architecture", "smp_architectures"]

SEG_EXTRA = "pip install 'featdistill[seg]'"
PREFIX = "smp:"


def _smp() -> Any:
    try:
        import segmentation_models_pytorch
    except ImportError:
        raise ImportError(f"smp: models need segmentation-models-pytorch: {SEG_EXTRA}") from None
    return segmentation_models_pytorch


def smp_architectures() -> dict[str, type[nn.Module]]:
    """The library's architectures by their class name (``Unet``, ``FPN``, ...)."""
    return {cls.__name__: cls for cls in _smp().MODEL_ARCHITECTURES_MAPPING.values()}


def smp_architecture(name: str) -> type[nn.Module]:
    """The architecture class of ``smp:<Architecture>/<encoder>`` (case-insensitive), or a did-you-mean error."""
    arch = name[len(PREFIX) :].partition("/")[0]
    known = smp_architectures()
    by_lower = {key.lower(): cls for key, cls in known.items()}
    if arch.lower() not in by_lower:
        raise ValueError(f"unknown smp architecture {arch!r} in {name!r}{did_you_mean(arch, known, many=3)}")
    return by_lower[arch.lower()]


def _check_encoder(name: str, encoder: str) -> None:
    """Refuse an encoder that neither the library nor timm (``tu-``) has, naming the closest ones."""
    if encoder.startswith("tu-"):
        import timm

        model = encoder[3:].partition(".")[0]
        if model not in timm.list_models():
            hint = did_you_mean(model, timm.list_models(), many=3, otherwise="see timm.list_models()")
            raise ValueError(f"unknown timm encoder {model!r} in {name!r}{hint}")
        return
    known = _smp().encoders.get_encoder_names()
    if encoder not in known:
        hint = did_you_mean(
            encoder, known, many=3, otherwise="see segmentation_models_pytorch.encoders.get_encoder_names()"
        )
        raise ValueError(f"unknown smp encoder {encoder!r} in {name!r}{hint}")


def _weights_repo(encoder: str, weights: Any) -> tuple[str, bool, str | None] | None:
    """Where the library downloads ``encoder``'s weights ``weights`` from: ``(repo or URL, on the hub,
    revision)``."""
    if weights is None or weights is False:
        return None
    if encoder.startswith("tu-"):
        cfg = timm_pretrained(encoder[3:])
        return (cfg.hf_hub_id or cfg.url or encoder[3:]), bool(cfg.hf_hub_id), None
    settings = _smp().encoders.encoders[encoder]["pretrained_settings"]
    if weights not in settings:
        raise ValueError(
            f"unknown encoder_weights {weights!r} for smp encoder {encoder}{did_you_mean(str(weights), settings)}"
        )
    return settings[weights]["repo_id"], True, settings[weights].get("revision")


def build_smp(name: str, num_classes: int, encoder_weights: Any = None, **kwargs: Any) -> nn.Module:
    """``smp:<Architecture>/<encoder>`` with ``num_classes`` outputs; ``kwargs`` go to the architecture.

    Raises ValueError naming the closest names for an unknown architecture, encoder or weights name, and a
    one-line WeightsError when the encoder weights are neither cached nor downloadable.
    """
    cls = smp_architecture(name)
    arch, _, encoder = name[len(PREFIX) :].partition("/")
    if not encoder:
        raise ValueError(f"{name!r} names no encoder: write smp:{arch}/<encoder>, e.g. smp:{arch}/resnet18")
    _check_encoder(name, encoder)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "classes", "encoder_name"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        hint = did_you_mean(unknown[0], accepted)
        raise TypeError(f"{name} takes no option {', '.join(unknown)}{hint}")
    if encoder.startswith("tu-") and encoder_weights not in (None, False):
        encoder_weights = (
            True  # timm encoders take a tag in their name (tu-<model>.<tag>), not a weights name
        )
    where = _weights_repo(encoder, encoder_weights)
    build = lambda: cls(  # noqa: E731
        encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **kwargs
    )
    if where is None:
        return build()
    with from_hub(f"{name} encoder_weights {encoder_weights}", *where):
        return build()
