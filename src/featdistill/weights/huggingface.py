"""Models whose weights live in the Hugging Face cache: ``hf:<repo or dir>`` (transformers) and timm.

``hf:`` builds ``AutoModelForImageClassification`` (wrapped to return its logits tensor, which the task
losses take) or, for segmentation, ``AutoModelForSemanticSegmentation`` (wrapped to return ``{"out": logits}``
at the input size, as the built-in segmenters do); its layers are tapped as ``hf.<transformers module path>``. No code from a
model repository runs unless ``trust_remote_code`` is set (then a warning says so), and weights are read
as safetensors or with ``weights_only`` loading. Files come from ``$HF_HOME/hub`` when cached; offline
with nothing cached is one line naming what to download and where.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import WeightsError

HUB_EXTRA = "pip install 'featdistill[hub]'"
CONNECT_TIMEOUT_S = 5.0
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class HFImageClassifier(nn.Module):
    """A transformers image classifier (``self.hf``) called on an image tensor, returning its logits."""

    tap_prefix = "hf."  # a tap address may leave it out (featdistill.taps.hooks.TAP_PREFIX_ATTRIBUTE)

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` of images ``(N, 3, H, W)``."""
        return self.hf(pixel_values=images).logits


class HFSemanticSegmenter(nn.Module):
    """A transformers semantic segmenter (``self.hf``) returning ``{"out": logits}`` at the input size.

    Its hidden states (a SegFormer's or ConvNeXt's stage maps, a ViT's tokens) also pass through the
    identity modules ``stages.<i>``, so that a stage output can be tapped where transformers reshapes it
    outside any module (``pairs: auto`` pairs them by stride).
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf
        side = self._side()
        hidden = self._hidden_states(side)
        self.stages = nn.ModuleList(nn.Identity() for _ in hidden)
        deepest = {side // h.shape[-1]: f"stages.{i}" for i, h in enumerate(hidden) if h.dim() == 4}
        self._levels = {
            address: stride for stride, address in sorted(deepest.items())
        }  # from the same dry run

    def _run(self, images: torch.Tensor) -> Any:
        return self.hf(pixel_values=images, output_hidden_states=True)

    def _side(self) -> int:
        """The model's own square input size (``config.image_size``), else 64 px: the dry runs' image."""
        side = getattr(self.hf.config, "image_size", None)
        return side if isinstance(side, int) and side > 0 else 64

    def _hidden_states(self, side: int) -> tuple[torch.Tensor, ...]:
        """The hidden states of one dry run on a blank ``side`` x ``side`` image."""
        was = self.hf.training
        self.hf.eval()
        try:
            with torch.no_grad():
                return tuple(self._run(torch.zeros(1, 3, side, side)).hidden_states or ())
        finally:
            self.hf.train(was)

    def feature_levels(self) -> dict[str, dict[str, int]]:
        """Its stage maps with their strides, the deepest one per stride (``{"backbone": {"stages.3": 32,
        ...}}``; ``{}`` for token hidden states): two such models pair stage by stage under ``pairs: auto``,
        where a trace would see a SegFormer's stage twice (its last block's tokens, then the map)."""
        return {"backbone": dict(self._levels)} if self._levels else {}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"out": logits (N, num_classes, H, W)}`` of images ``(N, 3, H, W)``, upsampled bilinearly."""
        result = self._run(images)
        for stage, hidden in zip(self.stages, result.hidden_states or ()):
            stage(hidden)
        logits = nn.functional.interpolate(
            result.logits, images.shape[-2:], mode="bilinear", align_corners=False
        )
        return {"out": logits}


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(f"Hugging Face models need huggingface-hub: {HUB_EXTRA}") from None
    return huggingface_hub


def _cache_dir() -> str:
    return str(_hub().constants.HF_HUB_CACHE)


def hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError

    return (OSError, EntryNotFoundError)


def _cached(repo: str, files: tuple[str, ...], revision: str | None = None) -> bool:
    """Whether ``repo`` (at ``revision``, else its main branch) has its config (when asked) and one weights
    file in the Hugging Face cache."""
    hub = _hub()
    have = {
        name
        for name in (*files, *_WEIGHT_FILES)
        if isinstance(hub.try_to_load_from_cache(repo, name, revision=revision), str)
    }
    return set(files) <= have and bool(have & set(_WEIGHT_FILES))


def _unreachable() -> str | None:
    """Why the hub cannot be reached, or None. Checked before a download because the hub client retries
    for about a minute before it gives up; skipped behind a proxy, which only the client knows how to use."""
    hub = _hub()
    if hub.constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    endpoint = urlparse(hub.constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        return f"cannot reach {endpoint.hostname}: {err}"
    return None


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Use only the cache: cached files load without network, even where the network is slow to fail."""
    constants = _hub().constants
    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def not_available(what: str, repo: str, reason: str) -> WeightsError:
    """One line: the repo expected in the cache, where the cache is, and how to fill it or go local."""
    return WeightsError(
        f"{what}: {repo} is not in the Hugging Face cache {_cache_dir()} and cannot be downloaded "
        f"({reason}); download it once on a machine with network (hf download {repo}; HF_HOME sets the cache), "
        "or use a local copy"
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own load report and progress bars while loading or saving a model (here and in
    ``featdistill.hf_export``): featdistill warns once itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# What each task builds from ``hf:``: the transformers Auto class, its model-type mapping and the words for it.
_KINDS = {
    "classification": (
        "AutoModelForImageClassification",
        "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
        "an image classifier",
        "image classification",
    ),
    "segmentation": (
        "AutoModelForSemanticSegmentation",
        "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
        "a semantic segmenter",
        "semantic segmentation",
    ),
    "detection": (
        "AutoModelForObjectDetection",
        "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
        "an object detector",
        "object detection",
    ),
}


def _checked_config(ref: str, trust_remote_code: bool, kind: str, num_labels: int) -> Any:
    """The model's config with ``num_labels``; refuses one that the task's Auto class cannot build, naming its
    model type."""
    from transformers import AutoConfig
    from transformers.models.auto import modeling_auto

    auto, mapping_name, what, checkpoint = _KINDS[kind]
    mapping = getattr(modeling_auto, mapping_name)
    try:
        config = AutoConfig.from_pretrained(ref, num_labels=num_labels, trust_remote_code=trust_remote_code)
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsError(f"hf:{ref}: unreadable config.json ({first}); use {what} model") from None
    remote = auto in (getattr(config, "auto_map", None) or {})
    if config.model_type not in mapping and not (trust_remote_code and remote):
        known = ", ".join(sorted(mapping)[:8])
        raise WeightsError(
            f"hf:{ref} is a {config.model_type!r} model, not {what} that transformers' "
            f"{auto} builds (types such as {known}, …); use {'an' if checkpoint[0] in 'aeiou' else 'a'} "
            f"{checkpoint} checkpoint"
        )
    return config


def hf_source(ref: str, trust_remote_code: bool) -> tuple[str, bool]:
    """``(ref, local)``: a ``save_pretrained`` directory (expanded) or a repo id, and whether it loads without
    the network (a directory, or cached). Offline with nothing cached, a missing directory, or one without
    ``config.json`` is a one-line ``WeightsError``; ``trust_remote_code`` warns once."""
    if trust_remote_code:
        warnings.warn(
            f"hf:{ref}: model.options.trust_remote_code is true, so Python code from that model repository "
            "runs on this machine; set it only for repositories you trust",
            stacklevel=3,
        )
    if Path(ref).expanduser().is_dir():
        ref = str(Path(ref).expanduser())
        if not (Path(ref) / "config.json").is_file():
            raise WeightsError(
                f"hf:{ref} has no config.json; give a directory written by save_pretrained, or a repo id"
            )
    elif ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise WeightsError(f"hf:{ref}: no such directory; give a save_pretrained directory or a repo id")
    local = Path(ref).is_dir() or _cached(ref, ("config.json",))
    reason = None if local else _unreachable()
    if reason:
        raise not_available(f"hf:{ref}", ref, reason)
    return ref, local


def load_hf_model(
    ref: str, kind: str, num_labels: int, trust_remote_code: bool = False, **config: Any
) -> nn.Module:
    """The transformers model of ``kind`` (``classification``: AutoModelForImageClassification;
    ``segmentation``: AutoModelForSemanticSegmentation; ``detection``: AutoModelForObjectDetection) from a repo id or a local ``save_pretrained`` directory, with ``num_labels``
    outputs (a head of another size is newly initialised, warning once with the keys left out); ``config``:
    attributes set on its config (and its ``backbone_config``) where they exist, before it is built."""
    try:
        import transformers
    except ImportError:
        raise ImportError(f"model 'hf:{ref}' needs transformers: {HUB_EXTRA}") from None
    ref, local = hf_source(ref, trust_remote_code)
    auto = getattr(transformers, _KINDS[kind][0])
    try:
        with hub_offline() if local else contextlib.nullcontext():
            model_config = _checked_config(ref, trust_remote_code, kind, num_labels)
        for part in (model_config, getattr(model_config, "backbone_config", None)):
            for key, value in config.items():
                if part is not None and hasattr(part, key):
                    setattr(part, key, value)
        with quiet_transformers(), hub_offline() if local else contextlib.nullcontext():
            model, info = auto.from_pretrained(
                ref,
                config=model_config,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                trust_remote_code=trust_remote_code,
                weights_only=True,
            )
    except hub_errors() as err:
        first = " ".join(str(err).split())[:200]
        if Path(ref).is_dir():
            raise WeightsError(f"hf:{ref}: cannot load the model ({first})") from None
        raise not_available(f"hf:{ref}", ref, first) from None
    left_out = [f"{key} {tuple(old)}" for key, old, _ in info.get("mismatched_keys", [])]
    left_out += list(info.get("missing_keys", []))
    if left_out:
        warnings.warn(
            f"hf:{ref}: left out {', '.join(sorted(left_out))} ({num_labels} labels); "
            "newly initialised (fine-tuning)",
            stacklevel=3,
        )
    return model


def card_hf_config(card: dict[str, Any]) -> dict[str, Any] | None:
    """The transformers config that a student card keeps for an ``hf:`` student (:func:`hf_model_config`), or
    None: another student, or a card without one (older, or partial)."""
    model = card.get("model") or {}
    return model.get("config") if str(model.get("student", "")).startswith("hf:") else None


def hf_model_config(model: nn.Module) -> dict[str, Any] | None:
    """The transformers config of ``model`` (a transformers model, or a wrapper holding one as ``.hf``) as
    plain JSON values, which a student card keeps so that :func:`hf_model_from_config` rebuilds the model from
    its checkpoint alone. None for a model type transformers does not know itself (remote code): that one
    needs its repository."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = getattr(model, "hf", model).config
    if getattr(config, "auto_map", None) or config.model_type not in CONFIG_MAPPING:
        return None
    return json.loads(config.to_json_string(use_diff=False))


def hf_model_from_config(config: dict[str, Any], kind: str) -> nn.Module:
    """The transformers model of ``kind`` (as in :func:`load_hf_model`) that ``config``
    (:func:`hf_model_config`) describes, randomly initialised for a checkpoint's weights: neither an ``hf:``
    folder nor the hub is read, and a pretrained backbone is not fetched (the checkpoint holds it)."""
    import transformers

    if "use_pretrained_backbone" in config:
        config = {**config, "use_pretrained_backbone": False}
    spec = transformers.AutoConfig.for_model(**config)
    with quiet_transformers():
        return getattr(transformers, _KINDS[kind][0]).from_config(spec)


def hf_file(ref: str, name: str) -> Path | None:
    """A small file of an ``hf:`` model (e.g. ``preprocessor_config.json``): from its directory or the cache."""
    if Path(ref).expanduser().is_dir():
        path = Path(ref).expanduser() / name
        return path if path.is_file() else None
    cached = _hub().try_to_load_from_cache(ref, name)
    return Path(cached) if isinstance(cached, str) else None


def build_hf_classifier(ref: str, num_classes: int, trust_remote_code: bool = False) -> HFImageClassifier:
    """``AutoModelForImageClassification`` from a repo id or a local ``save_pretrained`` directory.

    A classifier of another class count is replaced by a new one (warning once with the keys left out).
    """
    return HFImageClassifier(load_hf_model(ref, "classification", num_classes, trust_remote_code))


def build_hf_segmenter(ref: str, num_classes: int, trust_remote_code: bool = False) -> HFSemanticSegmenter:
    """``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, BEiT, ...) from a repo id or a local
    ``save_pretrained`` directory; a decode head of another class count is replaced by a new one."""
    return HFSemanticSegmenter(load_hf_model(ref, "segmentation", num_classes, trust_remote_code))


@contextlib.contextmanager
def from_hub(what: str, repo: str, on_hub: bool = True, revision: str | None = None) -> Iterator[None]:
    """Run a library's own download of ``repo`` (timm, segmentation_models_pytorch) from the Hugging Face
    cache when it is there; offline with nothing cached, or when the download fails, one line (``what``
    names the model). ``on_hub`` false: ``repo`` is a plain URL, whose download is left to the library."""
    local = on_hub and _cached(repo, (), revision)
    reason = None if local or not on_hub else _unreachable()
    if reason:
        raise not_available(what, repo, reason)
    try:
        with hub_offline() if local else contextlib.nullcontext():
            yield
    except hub_errors() as err:
        raise not_available(what, repo, " ".join(str(err).split())[:200]) from None


def timm_pretrained(name: str) -> Any:
    """timm's pretrained config of ``name`` (its ``hf_hub_id``, else ``url``, says where the weights are)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise WeightsError(
            f"timm has no pretrained weights for {name!r}; see timm.list_pretrained('{name}*')"
        )
    return cfg


def build_timm_classifier(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """A timm model, with timm's pretrained weights (Hugging Face cache) when ``pretrained``.

    A pretrained classifier of another class count is left out by timm; one warning names it.
    ``kwargs`` go to ``timm.create_model`` (``features_only=True`` gives a feature extractor).
    """
    try:
        import timm
    except ImportError:
        raise ImportError(f"model 'timm:{name}' needs timm, which is not installed: {HUB_EXTRA}") from None
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    cfg = timm_pretrained(name)
    with from_hub(f"timm:{name}", cfg.hf_hub_id or cfg.url or name, bool(cfg.hf_hub_id)):
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    if cfg.num_classes != num_classes and cfg.classifier and not kwargs.get("features_only"):
        heads = [cfg.classifier] if isinstance(cfg.classifier, str) else list(cfg.classifier)
        warnings.warn(
            f"timm:{name}: left out the pretrained classifier {', '.join(heads)} ({cfg.num_classes} classes, "
            f"model.num_classes is {num_classes}); it starts from a random initialisation (fine-tuning)",
            stacklevel=2,
        )
    return model
