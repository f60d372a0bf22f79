"""``pairs="auto"`` on real architectures (random weights, tiny inputs): backbones paired, never heads.

The cases of issue 19: DeepLabV3 paired the teacher's logits (``classifier``), Faster R-CNN mixed the
student's body with the teacher's FPN. Models are built with ``weights=None, weights_backbone=None``.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import detection, resnet18, segmentation

from featdistill.distiller.auto_pairs import Pairing, head_of, plan_auto_pairs
from featdistill.distiller.distiller import default_teacher_forward

NO_WEIGHTS = {"weights": None, "weights_backbone": None}
IMAGE = torch.randn(1, 3, 64, 64)
IMAGES = ([torch.rand(3, 64, 64)],)  # a detector's list of images; it resizes them to min_size


pytestmark = pytest.mark.usefixtures("one_thread")


def _plan(student: torch.nn.Module, teacher: torch.nn.Module, sample: object = IMAGE) -> Pairing:
    plan = plan_auto_pairs(student, teacher, sample, default_teacher_forward)
    for pair in plan.pairs:
        assert head_of(pair.student) is None and head_of(pair.teacher) is None, pair
    assert len(plan.reasons) == len(plan.pairs)
    return plan


def _names(plan: Pairing) -> list[tuple[str, str]]:
    return [(p.student, p.teacher) for p in plan.pairs]


def test_deeplabv3_pairs_backbone_stages_and_the_backbone_outputs() -> None:
    plan = _plan(
        segmentation.deeplabv3_mobilenet_v3_large(num_classes=3, **NO_WEIGHTS),
        segmentation.deeplabv3_resnet50(num_classes=3, **NO_WEIGHTS),
    )
    # ResNet-50 is dilated to 1/8, MobileNetV3 to 1/16: the two backbone outputs are still paired (2x).
    assert _names(plan) == [
        ("backbone.1", "backbone.relu"),
        ("backbone.3", "backbone.layer1"),
        ("backbone.16", "backbone.layer4"),
    ]
    assert plan.reasons[2].startswith("the backbone outputs (what the heads read), 4x4 and 8x8")
    assert "teacher 'classifier' and its layers: a head (it makes the predictions)" in plan.left_out
    assert (
        "pair 'backbone.6' -> 'backbone.layer4' (8x8): replaced by the backbone-output pair" in plan.left_out
    )


def test_fcn_and_lraspp_leave_out_classifier_and_aux_classifier() -> None:
    fcn = _plan(
        segmentation.fcn_resnet50(num_classes=3, aux_loss=True, **NO_WEIGHTS),
        segmentation.fcn_resnet101(num_classes=3, aux_loss=True, **NO_WEIGHTS),
    )
    assert _names(fcn)[-1] == ("backbone.layer4", "backbone.layer4")
    assert {"student 'aux_classifier' and its layers: a head (it makes the predictions)"} <= set(fcn.left_out)
    lraspp = _plan(
        segmentation.lraspp_mobilenet_v3_large(num_classes=3, **NO_WEIGHTS),
        segmentation.deeplabv3_mobilenet_v3_large(num_classes=3, **NO_WEIGHTS),
    )
    assert _names(lraspp) == [(f"backbone.{i}", f"backbone.{i}") for i in (1, 3, 6, 16)]


def test_faster_rcnn_pairs_fpn_levels_of_the_same_stride() -> None:
    small = {"min_size": 64, "max_size": 64, "num_classes": 3, **NO_WEIGHTS}
    plan = _plan(
        detection.fasterrcnn_mobilenet_v3_large_fpn(**small),
        detection.fasterrcnn_resnet50_fpn(**small),
        IMAGES,
    )
    for pair in plan.pairs:
        assert pair.student.startswith("backbone.fpn.") and pair.teacher.startswith("backbone.fpn."), pair
        assert pair.shapes[0][2:] == pair.shapes[1][2:]  # the same stride
    assert _names(plan) == [("backbone.fpn.layer_blocks.0", "backbone.fpn.layer_blocks.3")]
    assert any(why.startswith("the body maps of both models: both have an FPN") for why in plan.left_out)
    assert "teacher 'roi_heads' and its layers: a head (it makes the predictions)" in plan.left_out


def test_retinanet_pairs_each_fpn_level_and_leaves_out_its_head() -> None:
    small = {"min_size": 64, "max_size": 64, "num_classes": 3, **NO_WEIGHTS}
    plan = _plan(
        detection.retinanet_resnet50_fpn(**small), detection.retinanet_resnet50_fpn_v2(**small), IMAGES
    )
    assert _names(plan) == [(f"backbone.fpn.layer_blocks.{i}",) * 2 for i in (2, 1, 0)]
    assert "student 'head' and its layers: a head (it makes the predictions)" in plan.left_out


def test_timm_convnext_teacher_pairs_stages_not_its_head() -> None:
    timm = pytest.importorskip("timm")
    plan = _plan(resnet18(), timm.create_model("convnext_atto", pretrained=False, num_classes=3))
    assert _names(plan)[:3] == [("layer1", "stages.0"), ("layer2", "stages.1"), ("layer3", "stages.2")]
    assert "teacher 'head' and its layers: a head (it makes the predictions)" in plan.left_out
    assert "student 'fc' and its layers: a head (it makes the predictions)" in plan.left_out


def test_hf_vit_pairs_the_last_encoder_block() -> None:
    transformers = pytest.importorskip("transformers")
    from featdistill.weights.huggingface import HFImageClassifier

    def vit(width: int, depth: int) -> HFImageClassifier:
        config = transformers.ViTConfig(
            hidden_size=width, num_hidden_layers=depth, num_attention_heads=2, intermediate_size=2 * width,
            image_size=32, patch_size=8, num_labels=3,
        )  # fmt: skip
        return HFImageClassifier(transformers.ViTForImageClassification(config))

    def last_block(model: HFImageClassifier, depth: int) -> str:
        names = dict(model.named_modules())
        return next(
            n for n in (f"hf.vit.layers.{depth - 1}", f"hf.vit.encoder.layer.{depth - 1}") if n in names
        )

    student, teacher = vit(16, 2), vit(32, 3)
    plan = _plan(student, teacher, torch.randn(1, 3, 32, 32))
    pair = (
        last_block(student, 2),
        last_block(teacher, 3),
    )  # transformers 5: hf.vit.layers.1 -> hf.vit.layers.2
    assert pair in _names(plan)
    assert plan.reasons[_names(plan).index(pair)] == "the last block with 17 tokens in both models"
    assert "teacher 'hf.classifier' and its layers: a head (it makes the predictions)" in plan.left_out


def test_hf_resnet_keeps_its_pooler_head_and_its_stem_max_pool() -> None:
    """``resnet.pooler`` (global pooling) is a head; ``embedder.pooler``, the stem's max-pool, is body."""
    transformers = pytest.importorskip("transformers")
    from featdistill.weights.huggingface import HFImageClassifier

    def resnet(width: int) -> HFImageClassifier:
        config = transformers.ResNetConfig(
            embedding_size=width, hidden_sizes=[width, 2 * width], depths=[1, 1], layer_type="basic",
            num_labels=3,
        )  # fmt: skip
        return HFImageClassifier(transformers.ResNetForImageClassification(config))

    assert head_of("hf.resnet.embedder.pooler") is None
    assert head_of("hf.resnet.pooler") == "hf.resnet.pooler"
    plan = _plan(resnet(8), resnet(16), torch.randn(1, 3, 64, 64))
    assert _names(plan)[-1] == ("hf.resnet.encoder.stages.1", "hf.resnet.encoder.stages.1")
    assert "teacher 'hf.resnet.pooler' and its layers: a head (it makes the predictions)" in plan.left_out
    assert not any("embedder.pooler" in why for why in plan.left_out)
