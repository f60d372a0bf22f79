"""Which segmenters export to ONNX (featdistill's exporter), at 64x64, random init, checked with onnxruntime.

    PYTHONPATH=src python benchmarks/segmentation_onnx.py /tmp/probe 2>&1 | grep -E "^(hf|smp|pspnet|deeplabv3|fcn)"

Arguments: a scratch folder for the tiny hf: models, then optional substrings of the model names to run. One
line a model: ``ok`` with the ONNX input shape and the largest difference to eager, or ``FAIL`` and why
(benchmarks/results/segmentation_models.md reads these lines).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from transformers import (
    AutoModelForSemanticSegmentation,
    BeitConfig,
    ConvNextConfig,
    DPTConfig,
    MobileViTConfig,
    SegformerConfig,
    UperNetConfig,
)

from featdistill import export
from featdistill.tasks.segmentation.models import build_model


def saved(folder: Path, name: str, config: Any) -> str:
    """A random-init transformers segmenter of ``config`` written by save_pretrained; its ``hf:`` name."""
    torch.manual_seed(0)
    AutoModelForSemanticSegmentation.from_config(config).save_pretrained(folder / name)
    return f"hf:{folder / name}"


def cases(folder: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Model name -> (model.student, model.options) of every family probed."""
    convnext = ConvNextConfig(
        depths=[1, 1, 1, 1],
        hidden_sizes=[8, 16, 16, 16],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    vit = {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 1, "intermediate_size": 16}
    hf = {
        "hf SegFormer": SegformerConfig(
            depths=[1, 1, 1, 1],
            hidden_sizes=[8, 16, 16, 16],
            num_attention_heads=[1, 1, 1, 1],
            decoder_hidden_size=16,
            num_labels=3,
        ),
        "hf UperNet (ConvNeXt)": UperNetConfig(
            backbone_config=convnext, hidden_size=16, auxiliary_channels=8, num_labels=3
        ),
        "hf DPT": DPTConfig(
            **vit,
            image_size=64,
            patch_size=16,
            neck_hidden_sizes=[8, 8, 8, 8],
            fusion_hidden_size=8,
            num_labels=3,
            backbone_out_indices=[0, 1, 2, 3],
        ),
        "hf BEiT": BeitConfig(
            **vit,
            image_size=64,
            patch_size=16,
            out_indices=[0, 1, 2, 3],
            num_labels=3,
            pool_scales=[1, 2],
            use_auxiliary_head=False,
            auxiliary_channels=8,
        ),
        "hf MobileViT": MobileViTConfig(
            num_labels=3,
            image_size=64,
            hidden_sizes=[16, 16, 16],
            neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32],
            aspp_out_channels=16,
        ),
    }
    found = {name: (saved(folder, name.split()[1].lower(), config), {}) for name, config in hf.items()}
    for arch in ("Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "Linknet", "MAnet"):
        found[f"smp:{arch}/resnet18"] = (f"smp:{arch}/resnet18", {})
    for name in (
        "PAN/resnet18",
        "UPerNet/resnet18",
        "Segformer/resnet18",
        "Segformer/mit_b0",
        "DPT/tu-test_vit",
    ):
        found[f"smp:{name}"] = (f"smp:{name}", {})
    found["smp:Unet/tu-test_convnext"] = ("smp:Unet/tu-test_convnext", {})
    for head in ("pspnet", "deeplabv3", "fcn"):
        extra = {"channels": 16} if head == "pspnet" else {}
        for backbone in ("resnet18", "timm:test_efficientnet", "timm:test_convnext"):
            found[f"{head} {backbone}"] = (head, {"backbone": backbone, **extra})
    return found


def probe(name: str, model_name: str, options: dict[str, Any], folder: Path) -> str:
    start = time.monotonic()
    try:
        model = build_model(model_name, 3, **options).eval()
        x = torch.randn(1, 3, 64, 64)
        export._onnx(model, x, folder / "m.onnx")
        session = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        with torch.no_grad():
            expected = model(x)
        expected = expected["out"] if isinstance(expected, dict) else expected
        shape = session.get_inputs()[0].shape
        diff = float((got - expected).abs().max())
        return f"{name}: ok input {shape} maxerr {diff:.1e} ({time.monotonic() - start:.0f}s)"
    except Exception as err:  # every failure is a result here
        return f"{name}: FAIL {type(err).__name__}: {' '.join(str(err).split())[:160]}"


def main() -> None:
    warnings.simplefilter("ignore")
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/probe")
    folder.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2:]
    for name, (model_name, options) in cases(folder).items():
        if not only or any(part in name for part in only):
            print(probe(name, model_name, options, folder), flush=True)


if __name__ == "__main__":
    main()
