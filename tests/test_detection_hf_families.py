"""Every DETR family that transformers ships behind ``hf:`` (DETR, Conditional and Deformable DETR, YOLOS,
RT-DETR v2, D-FINE; RT-DETR v1 in test_detection_models.py): built random from a tiny config, it trains with
its own loss on the task's targets and its eval outputs are torchvision-style detections in image pixels."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from featdistill.tasks.detection.hf_detector import HFDetector

pytestmark = pytest.mark.usefixtures("one_thread")
transformers = pytest.importorskip("transformers")

SMALL = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "num_queries": 5,
    "num_labels": 2,
}
HYBRID = {  # RT-DETR v2 and D-FINE: a hybrid encoder over three backbone stages
    "use_pretrained_backbone": False,
    "encoder_in_channels": [32, 64, 128],
    "encoder_hidden_dim": 32,
    "decoder_in_channels": [32, 32, 32],
    "d_model": 32,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "num_queries": 20,
    "num_denoising": 4,
    "num_labels": 2,
}
STAGES = ["stage2", "stage3", "stage4"]


def _resnet(sizes: list[int], out: list[str]) -> object:
    return transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=sizes, depths=[1] * len(sizes), layer_type="basic", out_features=out
    )


def _detr(cls: Callable[..., object]) -> object:
    backbone = _resnet([8, 16], ["stage2"])
    return cls(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, **SMALL)


FAMILIES: dict[str, Callable[[], object]] = {
    "detr": lambda: _detr(transformers.DetrConfig),
    "conditional_detr": lambda: _detr(transformers.ConditionalDetrConfig),
    "deformable_detr": lambda: transformers.DeformableDetrConfig(
        backbone_config=_resnet([8, 16, 32], ["stage2", "stage3"]),
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        num_feature_levels=2,
        encoder_n_points=2,
        decoder_n_points=2,
        **{**SMALL, "d_model": 32},  # its group norms take 32 groups
    ),
    "yolos": lambda: transformers.YolosConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=[64, 64],
        patch_size=16,
        num_detection_tokens=5,
        num_labels=2,
    ),
    "rt_detr_v2": lambda: transformers.RTDetrV2Config(
        backbone_config=transformers.RTDetrResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 64, 128],
            depths=[1] * 4,
            layer_type="basic",
            out_features=STAGES,
        ),
        **HYBRID,
    ),
    "d_fine": lambda: transformers.DFineConfig(
        backbone_config=transformers.HGNetV2Config(
            stem_channels=[3, 8, 8],
            stage_in_channels=[8, 16, 32, 64],
            stage_mid_channels=[8, 16, 32, 64],
            stage_out_channels=[16, 32, 64, 128],
            hidden_sizes=[16, 32, 64, 128],
            stage_num_blocks=[1] * 4,
            stage_downsample=[False, True, True, True],
            stage_light_block=[False, False, True, True],
            stage_kernel_size=[3, 3, 5, 5],
            stage_numb_of_layers=[1] * 4,
            out_features=STAGES,
        ),
        **HYBRID,
    ),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_hf_detr_family_trains_on_our_targets_and_returns_torchvision_detections(family: str) -> None:
    torch.manual_seed(0)
    hf = transformers.AutoModelForObjectDetection.from_config(FAMILIES[family]())
    detector = HFDetector(hf, min_size=64, max_size=64, box_detections_per_img=7)
    images = [torch.rand(3, 48, 64), torch.rand(3, 64, 40)]
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[2.0, 10.0, 20.0, 50.0], [10.0, 10.0, 30.0, 30.0]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    detector.train()
    losses = detector(images, targets)
    assert set(losses) == {"loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in hf.parameters())
    detector.eval()
    with torch.no_grad():
        found = detector(images)
    for image, detections in zip(images, found, strict=True):
        h, w = image.shape[1:]
        boxes, labels, scores = detections["boxes"], detections["labels"], detections["scores"]
        assert boxes.shape == (7, 4) and labels.shape == scores.shape == (7,)
        assert set(labels.tolist()) <= {1, 2}  # 1..K as torchvision's, 0 is the background
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
        assert torch.equal(scores, scores.sort(descending=True).values)
