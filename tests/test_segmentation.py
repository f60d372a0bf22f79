"""Tests of the segmentation task: metrics, joint augmentation, datasets, models, inference, distillation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F

import featdistill
from featdistill.tasks.segmentation import (
    CamVid,
    Cityscapes,
    SegmentationMeter,
    build_dataset,
    build_segmenter,
    build_train_transform,
    evaluate,
    predict,
    slide_inference,
    whole_inference,
)
from featdistill.tasks.segmentation.augment import (
    JointCompose,
    Normalize,
    PhotometricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
)

CAMVID_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


# ---------------------------------------------------------------- metrics


def test_miou_against_hand_computed_confusion_matrix() -> None:
    # (gt, pred) pixels; 255 is ignored; class 3 never appears in gt or pred.
    target = torch.tensor([[[0, 0, 0], [1, 1, 1], [2, 255, 255]]])
    pred = torch.tensor([[[0, 0, 1], [1, 1, 2], [0, 2, 1]]])
    # rows = gt, columns = pred:
    expected = torch.tensor(
        [
            [2, 1, 0, 0],
            [0, 2, 1, 0],
            [1, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    meter = SegmentationMeter(num_classes=4, ignore_index=255)
    meter.update(pred[..., :2], target[..., :2])  # two updates accumulate
    meter.update(F.one_hot(pred[..., 2:], 4).permute(0, 3, 1, 2).float(), target[..., 2:])  # logits form
    assert torch.equal(meter.confusion, expected)

    m = meter.compute()
    # IoU_c = TP / (row + col - TP): class 0: 2/(3+3-2), class 1: 2/(3+3-2), class 2: 0/(1+1-0), class 3: 0/0
    assert m["iou"][:3] == pytest.approx([0.5, 0.5, 0.0])
    assert math.isnan(m["iou"][3])
    assert m["miou"] == pytest.approx(1 / 3)  # NaN class excluded from the mean
    assert m["pixel_acc"] == pytest.approx(4 / 7)
    assert m["mean_acc"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)

    with pytest.raises(ValueError, match="target ids"):
        meter.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    meter.reset()
    assert meter.confusion.sum() == 0


# ---------------------------------------------------------------- augmentation


def _encoded_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel encodes its label (class * 40 / 255), other channels random."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 5, (6, 8), generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1)
    image = torch.rand(3, 24, 32, generator=g)
    image[0] = label.float() * 40 / 255
    return image, label


def test_joint_augmentation_keeps_image_and_label_aligned() -> None:
    torch.manual_seed(0)
    # Padding uses red = 1.0, which decodes to the (non-class) value 6 where the label must be 255.
    pipeline = JointCompose(
        [
            RandomScale((0.5, 2.0), image_mode="nearest"),
            RandomCrop(40, fill=(1.0, 0.0, 0.0)),
            RandomHorizontalFlip(0.5),
        ]
    )
    saw_padding = saw_class = False
    for seed in range(30):
        image, label = _encoded_pair(seed)
        out_image, out_label = pipeline(image, label)
        assert out_image.shape == (3, 40, 40) and out_label.shape == (40, 40)
        assert out_label.dtype == torch.int64
        decoded = torch.round(out_image[0] * 255 / 40).long()
        expected = torch.where(out_label == 255, torch.full_like(out_label, 6), out_label)
        assert torch.equal(decoded, expected)
        saw_padding |= bool((out_label == 255).any())
        saw_class |= bool((out_label != 255).all())
    assert saw_padding and saw_class  # both padded and fully cropped samples were exercised


def test_flip_moves_label_with_image() -> None:
    image, label = _encoded_pair(1)
    out_image, out_label = RandomHorizontalFlip(p=1.0)(image, label)
    assert torch.equal(out_label, label.flip(-1))
    assert torch.equal(out_image, image.flip(-1))


def test_photometric_and_normalize_touch_image_only() -> None:
    torch.manual_seed(0)
    image, label = _encoded_pair(2)
    out_image, out_label = PhotometricDistortion(p=1.0)(image, label)
    assert torch.equal(out_label, label)
    assert not torch.equal(out_image, image)
    assert out_image.min() >= 0 and out_image.max() <= 1
    norm_image, norm_label = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(image, label)
    assert torch.allclose(norm_image, (image - 0.5) / 0.25)
    assert norm_label is label


def test_train_transform_bilinear_keeps_label_values() -> None:
    torch.manual_seed(0)
    image, label = _encoded_pair(3)
    out_image, out_label = build_train_transform((16, 20))(image, label)
    assert out_image.shape == (3, 16, 20) and out_image.dtype == torch.float32
    assert set(out_label.unique().tolist()) <= {0, 1, 2, 3, 4, 255}


# ---------------------------------------------------------------- datasets


def test_camvid_real_folder() -> None:
    if not CAMVID_ROOT.is_dir():
        pytest.skip(f"CamVid not found at {CAMVID_ROOT}")
    ds = CamVid(CAMVID_ROOT, "val")
    assert len(ds) == 101
    assert ds.num_classes == 11 and ds.classes[0] == "Sky"
    for i in range(3):
        image, label = ds[i]
        assert image.shape == (3, 180, 240) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert label.shape == (180, 240) and label.dtype == torch.int64
        values = set(label.unique().tolist())
        assert values <= set(range(11)) | {255}


def _write_png(path: Path, array: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.numpy()).save(path)


def test_cityscapes_layout_and_trainid_mapping(tmp_path: Path) -> None:
    # labelIds -> trainIds, written out by hand from the official label table.
    ids = torch.tensor([[0, 1, 7, 8, 11, 12], [13, 17, 19, 20, 9, 21], [22, 23, 24, 25, 26, 27]])
    train_ids = torch.tensor(
        [[255, 255, 0, 1, 2, 3], [4, 5, 6, 7, 255, 8], [9, 10, 11, 12, 13, 14]], dtype=torch.int64
    )
    ids2 = torch.tensor([[28, 31, 32, 33, 29, 30], [14, 15, 16, 18, 4, 6], [5, 3, 2, 10, 7, 26]])
    train_ids2 = torch.tensor(
        [[15, 16, 17, 18, 255, 255], [255] * 6, [255, 255, 255, 255, 0, 13]], dtype=torch.int64
    )
    for city, stem, lab in [
        ("aachen", "aachen_000000_000019", ids),
        ("bremen", "bremen_000001_000019", ids2),
    ]:
        rgb = torch.randint(0, 256, (3, 6, 3), dtype=torch.uint8)
        _write_png(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", rgb)
        _write_png(tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", lab.to(torch.uint8))

    for in_memory in (False, True):
        ds = Cityscapes(tmp_path, "val", in_memory=in_memory)
        assert len(ds) == 2 and ds.num_classes == 19
        (img1, lab1), (_, lab2) = ds[0], ds[1]
        assert img1.shape == (3, 3, 6) and lab1.dtype == torch.int64
        assert torch.equal(lab1, train_ids)
        assert torch.equal(lab2, train_ids2)


def test_missing_or_empty_folders_raise_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"nope.*expected layout: root/\{train,val,test\}"):
        CamVid(missing)
    with pytest.raises(FileNotFoundError, match=r"nope.*leftImg8bit"):
        build_dataset("cityscapes", missing, "val")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="trainannot"):
        CamVid(tmp_path)
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(ValueError, match=r"no \*\.png images in .*train"):
        CamVid(tmp_path)
    _write_png(tmp_path / "train" / "a.png", torch.zeros(4, 4, 3, dtype=torch.uint8))
    with pytest.raises(FileNotFoundError, match=r"trainannot.a\.png"):
        CamVid(tmp_path)
    with pytest.raises(ValueError, match="unknown segmentation dataset"):
        build_dataset("mapillary", tmp_path)


# ---------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("name", "backbone", "channels"),
    [
        ("pspnet", "resnet18", 512),
        ("pspnet", "resnet50", 2048),
        ("deeplabv3", "resnet18", 512),
        ("deeplabv3", "resnet50", 2048),
    ],
)
def test_segmenter_shapes_and_taps(name: str, backbone: str, channels: int) -> None:
    torch.manual_seed(0)
    model = build_segmenter(name, 5, backbone=backbone)
    feats: dict[str, torch.Size] = {}
    for stage in ("layer3", "layer4"):
        module = model.get_submodule(f"backbone.{stage}")
        module.register_forward_hook(lambda m, i, o, stage=stage: feats.__setitem__(stage, o.shape))
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out["out"].shape == (2, 5, 64, 64)
    assert out["aux"].shape == (2, 5, 64, 64)
    assert feats["layer4"] == (2, channels, 8, 8)  # output stride 8
    assert feats["layer3"] == (2, channels // 2, 8, 8)
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    assert eval_out["out"].shape == (2, 5, 64, 64)
    if backbone == "resnet18":  # our models skip the aux head in eval; torchvision's keep it
        assert set(eval_out) == {"out"}


def test_build_segmenter_options_and_errors(tmp_path: Path) -> None:
    model = build_segmenter("pspnet", 3, aux=False, channels=32)
    assert model.aux_classifier is None
    assert model.classifier.cls.in_channels == 32

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(reference.state_dict(), path)
    loaded = build_segmenter("deeplabv3", 3, backbone="resnet18", pretrained_backbone=str(path))
    assert torch.equal(loaded.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)

    with pytest.raises(ValueError, match="did you mean 'pspnet'"):
        build_segmenter("pspnett", 3)
    with pytest.raises(ValueError, match="valid: resnet18, resnet34, resnet50, resnet101"):
        build_segmenter("fcn", 3, backbone="mobilenet_v3_large")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        build_segmenter("pspnet", 3, pretrained_backbone=str(tmp_path / "missing.pt"))


# ---------------------------------------------------------------- inference


def _pointwise_model() -> nn.Module:
    """Per-pixel model: any window gives the same logits as the whole image where it has real pixels."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 1)


def test_slide_equals_whole_when_one_window_covers_image() -> None:
    torch.manual_seed(0)
    model = build_segmenter("pspnet", 4, aux=False, channels=16).eval()
    image = torch.randn(1, 3, 40, 48)
    whole = whole_inference(model, image)
    slide = slide_inference(model, image, window=(40, 48), stride=16)
    assert whole.shape == (1, 4, 40, 48)
    assert torch.allclose(slide, whole, atol=1e-5)


def test_slide_overlap_averaging_and_padding() -> None:
    model = _pointwise_model()
    image = torch.randn(2, 3, 21, 30)
    whole = whole_inference(model, image)
    for window, stride in [(8, 5), ((16, 12), (7, 9)), (32, 32)]:  # overlaps, uneven, larger than image
        slide = predict(model, image, mode="slide", window=window, stride=stride)
        assert slide.shape == (2, 4, 21, 30)
        assert torch.allclose(slide, whole, atol=1e-6)


def test_evaluate_perfect_model() -> None:
    model = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        model.bias.zero_()
    label = torch.tensor([[[0, 1, 2, 255], [2, 1, 0, 0]]])
    image = F.one_hot(label.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    result = evaluate(model, [(image, label)], 3, mode="slide", window=2, stride=1)
    assert result["miou"] == pytest.approx(1.0)
    assert result["pixel_acc"] == pytest.approx(1.0)
    assert model.training  # mode restored


# ---------------------------------------------------------------- distillation


@pytest.mark.parametrize(
    ("student_spec", "teacher_spec"),
    [
        (("pspnet", "resnet18"), ("pspnet", "resnet50")),
        (("deeplabv3", "resnet18"), ("deeplabv3", "resnet50")),
    ],
)
def test_distillation_step(student_spec: tuple[str, str], teacher_spec: tuple[str, str]) -> None:
    torch.manual_seed(0)
    student = build_segmenter(student_spec[0], 5, backbone=student_spec[1])
    teacher = build_segmenter(teacher_spec[0], 5, backbone=teacher_spec[1])
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 5, (2, 64, 64))
    y[:, :4] = 255
    d = featdistill.Distiller(
        student,
        teacher,
        pairs=[("backbone.layer4", "backbone.layer4")],
        method="cwt",
        alpha=2e-5,
        sample_input=x,
    )
    params = list(d.parameters())
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in params}
    opt = torch.optim.SGD(params, lr=0.01)
    d.train()
    out = d(x)
    task = F.cross_entropy(out.student["out"], y, ignore_index=255)
    task = task + 0.4 * F.cross_entropy(out.student["aux"], y, ignore_index=255)
    (task + out.loss).backward()
    assert out.loss.item() > 0
    assert student.backbone.layer4[-1].conv1.weight.grad.abs().sum() > 0
    assert student.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0
    transform_grads = [p.grad for p in d.transforms.parameters()]
    assert transform_grads and all(g is not None and g.abs().sum() > 0 for g in transform_grads)
    opt.step()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k
