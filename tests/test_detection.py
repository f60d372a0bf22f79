"""Detection / instance segmentation building blocks: data, augmentation, evaluation, models, distillation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools")

from featdistill.tasks.detection.augment import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResize,
    _mask_boxes,
)
from featdistill.tasks.detection.data import CocoDetection, collate_fn
from featdistill.tasks.detection.evaluate import CocoEvaluator
from featdistill.tasks.detection.models import (
    build_detector,
    fpn_level_names,
    match_transform,
)

COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128"
CROWD_IMAGE = 257  # holds a crowd RLE annotation among 34
FAMILIES = ("fasterrcnn", "maskrcnn", "retinanet", "fcos")
LEVELS = {
    "fasterrcnn": ["0", "1", "2", "3", "pool"],
    "maskrcnn": ["0", "1", "2", "3", "pool"],
    "retinanet": ["0", "1", "2", "p6", "p7"],
    "fcos": ["0", "1", "2", "p6", "p7"],
}

# Few proposals / detections keep CPU steps fast; they only change how much work the heads do.
_TWO_STAGE_KW = dict(
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50,
    box_batch_size_per_image=64,
    box_detections_per_img=10,
)
_ONE_STAGE_KW = dict(topk_candidates=100, detections_per_img=10)


def _tiny(name: str, backbone: str = "resnet18", min_size: int = 128):
    kw = _TWO_STAGE_KW if name in ("fasterrcnn", "maskrcnn") else _ONE_STAGE_KW
    return build_detector(name, 3, backbone=backbone, min_size=min_size, max_size=256, **kw)


@pytest.fixture(scope="module")
def coco128() -> CocoDetection:
    if not (COCO128 / "annotations" / "instances.json").is_file():
        pytest.skip(f"coco128 not found at {COCO128}")
    return CocoDetection(COCO128 / "images", COCO128 / "annotations" / "instances.json", masks=True)


def _sample(ds: CocoDetection, image_id: int):
    return ds[ds.ids.index(image_id)]


# ----------------------------------------------------------------------------------------------- data


def test_coco_loading_boxes_polygons_and_crowd_rle(coco128: CocoDetection) -> None:
    ds = coco128
    assert ds.num_classes == 81 and ds.cat_ids == sorted(ds.cat_ids)
    assert all(ds.label_to_cat_id[ds.cat_id_to_label[c]] == c for c in ds.cat_ids)

    anns = ds.coco.imgToAnns[CROWD_IMAGE]
    crowd = [a for a in anns if a["iscrowd"]]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"]["counts"], list)
    counts = crowd[0]["segmentation"]["counts"]  # uncompressed RLE: runs of 0s and 1s, column-major
    crowd_mask = ds.coco.annToMask(crowd[0])
    assert crowd_mask.shape == tuple(crowd[0]["segmentation"]["size"]) and crowd_mask.sum() == sum(
        counts[1::2]
    )
    assert crowd_mask.T.reshape(-1)[counts[0]] == 1 and crowd_mask.T.reshape(-1)[counts[0] - 1] == 0

    image, target = _sample(ds, CROWD_IMAGE)
    h, w = image.shape[-2:]
    assert image.dtype == torch.float32 and image.min() >= 0.0 and image.max() <= 1.0
    assert len(target["boxes"]) == len(anns) - 1  # the crowd annotation is not a training target
    assert target["image_id"] == CROWD_IMAGE and not target["iscrowd"].any()
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (len(anns) - 1, h, w)
    assert (target["masks"].flatten(1).sum(1) > 0).all()  # polygons rasterised
    assert target["labels"].min() >= 1 and target["labels"].max() < ds.num_classes
    boxes = target["boxes"]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) > 1).all()
    labels = [ds.label_to_cat_id[int(x)] for x in target["labels"]]
    assert labels == [a["category_id"] for a in anns if not a["iscrowd"]]

    images, targets = collate_fn([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_skip_empty(coco128: CocoDetection) -> None:
    kept = CocoDetection(COCO128 / "images", COCO128 / "annotations" / "instances.json", skip_empty=True)
    assert len(kept) == len(coco128) - 2  # coco128 has two images without annotations
    assert all(len(kept[i][1]["boxes"]) for i in range(3))


def _write_coco(tmp_path: Path, files: list[str], data: object | None = None) -> Path:
    images = [{"id": i + 1, "file_name": f, "height": 8, "width": 8} for i, f in enumerate(files)]
    ann = tmp_path / "ann.json"
    ann.write_text(
        json.dumps({"images": images, "annotations": [], "categories": []} if data is None else data)
    )
    return ann


def test_invalid_json_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        CocoDetection(tmp_path, bad)
    ann = _write_coco(tmp_path, [], data={"images": [], "categories": []})
    with pytest.raises(ValueError, match=r"ann\.json.*annotations"):
        CocoDetection(tmp_path, ann)


def test_missing_image_error(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "present.jpg")
    ann = _write_coco(tmp_path, ["present.jpg", "gone1.jpg", "gone2.jpg"])
    with pytest.raises(FileNotFoundError, match=r"^2 image\(s\) .*gone1\.jpg, gone2\.jpg$"):
        CocoDetection(tmp_path, ann)


# --------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augmentation_keeps_boxes_and_masks_consistent(coco128: CocoDetection, seed: int) -> None:
    torch.manual_seed(seed)
    augment = Compose(
        [RandomHorizontalFlip(1.0), RandomResize([360, 420], max_size=600), RandomCrop((300, 400))]
    )
    image, target = _sample(coco128, 9)
    original = len(target["boxes"])
    image, target = augment(image, target)
    assert image.shape[-2:] == target["masks"].shape[-2:] and tuple(image.shape[-2:]) == (300, 400)
    assert 0 < len(target["boxes"]) <= original
    assert len(target["labels"]) == len(target["masks"]) == len(target["area"]) == len(target["boxes"])
    # COCO boxes and rasterised polygons already differ by up to ~1.8 px; resizing scales that down.
    assert torch.allclose(_mask_boxes(target["masks"]), target["boxes"], atol=2.0)


def test_flip_is_exact() -> None:
    masks = torch.zeros(1, 10, 20, dtype=torch.uint8)
    masks[0, 2:5, 1:7] = 1
    target = {"boxes": torch.tensor([[1.0, 2.0, 7.0, 5.0]]), "masks": masks}
    _, flipped = RandomHorizontalFlip(1.0)(torch.rand(3, 10, 20), target)
    assert flipped["boxes"].tolist() == [[13.0, 2.0, 19.0, 5.0]]
    assert _mask_boxes(flipped["masks"]).tolist() == flipped["boxes"].tolist()


# ----------------------------------------------------------------------------------------- evaluation


def _gt_outputs(ds: CocoDetection, image_ids: list[int]):
    outputs, ids = [], []
    for image_id in image_ids:
        _, target = _sample(ds, image_id)
        n = len(target["boxes"])
        outputs.append(
            {
                "boxes": target["boxes"],
                "labels": target["labels"],
                "scores": torch.ones(n),
                "masks": target["masks"][:, None].float(),
            }
        )
        ids.append(target["image_id"])
    return outputs, ids


def test_ground_truth_as_predictions_gives_ap_one(coco128: CocoDetection, tmp_path: Path) -> None:
    image_ids = [CROWD_IMAGE, 9, 25]  # crowd regions are not predicted and not counted as misses
    outputs, ids = _gt_outputs(coco128, image_ids)
    evaluator = CocoEvaluator.from_dataset(coco128, ("bbox", "segm"))
    evaluator.update(outputs, ids)
    metrics = evaluator.summarize()
    for key in ("bbox/AP", "bbox/AP50", "bbox/AP75", "segm/AP", "segm/AP50", "segm/AP75"):
        assert metrics[key] == pytest.approx(1.0), key
    assert evaluator.image_ids == sorted(image_ids)

    path = tmp_path / "segm.json"
    evaluator.save_json(path, "segm")
    saved = json.loads(path.read_text())
    assert len(saved) == sum(len(o["boxes"]) for o in outputs) and "segmentation" in saved[0]


def test_background_label_detections_are_dropped(coco128: CocoDetection) -> None:
    """RetinaNet/FCOS can output label 0 (their sigmoid slot for the background): scored as nothing."""
    outputs, ids = _gt_outputs(coco128, [9, 25])
    noisy = []
    for out in outputs:
        n = len(out["boxes"])
        noisy.append(
            {
                "boxes": torch.cat([out["boxes"], out["boxes"]]),
                "labels": torch.cat([out["labels"], torch.zeros(n, dtype=torch.int64)]),
                "scores": torch.cat([out["scores"], torch.full((n,), 0.99)]),
                "masks": torch.cat([out["masks"], out["masks"]]),
            }
        )
    evaluator = CocoEvaluator.from_dataset(coco128, ("bbox", "segm"))
    evaluator.update(noisy, ids)
    assert len(evaluator.results) == 2 * sum(len(o["boxes"]) for o in outputs)  # bbox + segm, no label 0
    assert {r["category_id"] for r in evaluator.results} <= set(coco128.cat_ids)
    metrics = evaluator.summarize()
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["segm/AP"] == pytest.approx(1.0)

    beyond = {**outputs[0], "labels": torch.full_like(outputs[0]["labels"], coco128.num_classes)}
    with pytest.raises(ValueError, match=f"model label {coco128.num_classes} has no category id"):
        CocoEvaluator.from_dataset(coco128).update([beyond], ids[:1])


def test_merge_and_rescale(coco128: CocoDetection) -> None:
    outputs, ids = _gt_outputs(coco128, [9, 25])
    rank0 = CocoEvaluator.from_dataset(coco128)
    rank0.update(outputs[:1], ids[:1])
    rank1 = CocoEvaluator.from_dataset(coco128)
    half = {k: v for k, v in outputs[1].items() if k != "masks"}
    half["boxes"] = half["boxes"] / 2  # predicted on a half-size image, scaled back by update
    h, w = coco128.coco.imgs[ids[1]]["height"], coco128.coco.imgs[ids[1]]["width"]
    rank1.update([half], ids[1:], image_sizes=[(h // 2, w // 2)])
    rank0.merge(rank1.results, rank1.image_ids)
    rank0.merge(rank1.results, rank1.image_ids)  # a duplicate from a padded sampler counts once
    assert rank0.image_ids == sorted(ids)
    assert len(rank0.results) == sum(len(o["boxes"]) for o in outputs)
    assert rank0.summarize()["bbox/AP"] == pytest.approx(1.0)

    # An image where nothing was detected lowers AP once its id is known.
    empty = CocoEvaluator.from_dataset(coco128)
    empty.merge(rank0.results[:0], [30])
    assert empty.summarize()["bbox/AP"] == 0.0


# --------------------------------------------------------------------------------------------- models


def _synthetic_batch(with_masks: bool):
    images, targets = [], []
    for i in range(2):
        x1, y1, x2, y2 = 10 + 8 * i, 12, 70 + 8 * i, 80
        target = {
            "boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32),
            "labels": torch.tensor([1 + i]),
        }
        if with_masks:
            masks = torch.zeros(1, 96, 128, dtype=torch.uint8)
            masks[0, y1:y2, x1:x2] = 1
            target["masks"] = masks
        images.append(torch.rand(3, 96, 128))
        targets.append(target)
    return images, targets


@pytest.mark.parametrize("name", FAMILIES)
def test_train_step_and_eval_forward(name: str) -> None:
    torch.manual_seed(0)
    model = _tiny(name)
    assert fpn_level_names(model) == LEVELS[name]
    features = model.backbone(torch.rand(1, 3, 128, 160))
    assert list(features) == fpn_level_names(model)

    images, targets = _synthetic_batch(with_masks=name == "maskrcnn")
    model.train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    if name == "maskrcnn":
        assert "loss_mask" in losses
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = model.backbone.fpn.layer_blocks[0][0].weight.detach().clone()
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.backbone.fpn.layer_blocks[0][0].weight)

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out in outputs:
        n = len(out["boxes"])
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,) and out["labels"].shape == (n,)
        if name == "maskrcnn":
            assert out["masks"].shape == (n, 1, 96, 128)


def test_mobilenet_fpn_levels() -> None:
    two_stage = build_detector("fasterrcnn", 3, backbone="mobilenet_v3_large", min_size=128)
    one_stage = build_detector("retinanet", 3, backbone="mobilenet_v3_large", min_size=128)
    assert fpn_level_names(two_stage) == ["0", "1", "pool"]
    assert fpn_level_names(one_stage) == ["0", "1", "2", "p6", "p7"]
    strides = [128 // f.shape[-1] for f in one_stage.backbone(torch.rand(1, 3, 128, 128)).values()]
    assert strides == [8, 16, 32, 64, 128]


def test_fpn_level_names_of_custom_extra_block() -> None:
    import torchvision
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

    class Halve(ExtraFPNBlock):
        def forward(self, results, x, names):
            return [*results, results[-1][..., ::2, ::2]], [*names, "half"]

    model = torch.nn.Module()
    resnet = torchvision.models.resnet18(weights=None)
    model.backbone = BackboneWithFPN(
        resnet, {"layer3": "a", "layer4": "b"}, [256, 512], 32, extra_blocks=Halve()
    )
    model.train()
    assert fpn_level_names(model) == ["a", "b", "half"]
    assert model.backbone.training
    with pytest.raises(TypeError, match="FPN backbone"):
        fpn_level_names(torch.nn.Linear(2, 2))


def test_build_detector_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fasterrcnn"):
        build_detector("fasterrcn", 3)
    with pytest.raises(ValueError, match="resnet18"):
        build_detector("fcos", 3, backbone="resnet19")
    with pytest.raises(TypeError, match="one int"):
        build_detector("fcos", 3, backbone="resnet18", min_size=(96, 128))


def test_pretrained_backbone_from_file(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "resnet18.pt"
    classifier = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": classifier.state_dict()}, path)
    model = build_detector(
        "fcos", 3, backbone="resnet18", min_size=128, pretrained_backbone=path, trainable_layers=2
    )
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, classifier.conv1.weight)
    assert not body.layer2[0].conv1.weight.requires_grad and body.layer3[0].conv1.weight.requires_grad


def test_match_transform() -> None:
    student = build_detector("fasterrcnn", 3, backbone="resnet18", min_size=128, max_size=200)
    teacher = build_detector("fasterrcnn", 3, backbone="resnet34", min_size=160, max_size=300)
    teacher.transform.image_mean = [0.5, 0.5, 0.5]
    images = [torch.rand(3, 90, 120), torch.rand(3, 100, 80)]
    teacher.eval()
    student.train()
    assert teacher.transform(images)[0].tensors.shape != student.transform(images)[0].tensors.shape

    assert match_transform(teacher, student) is teacher
    assert torch.equal(teacher.transform(images)[0].tensors, student.transform(images)[0].tensors)

    student.transform.min_size = (96, 128)
    with pytest.raises(ValueError, match="several min_size"):
        match_transform(teacher, student)
    with pytest.raises(TypeError, match="GeneralizedRCNNTransform"):
        match_transform(teacher, torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------ distillation

HEADS = {
    "fasterrcnn": ("rpn", "roi_heads"),
    "maskrcnn": ("rpn", "roi_heads"),
    "retinanet": ("head",),
    "fcos": ("head",),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_cwt_distillation_step_on_all_fpn_levels(name: str) -> None:
    import featdistill

    torch.manual_seed(0)
    student = _tiny(name)
    teacher = _tiny(name, backbone="resnet34", min_size=160)
    match_transform(teacher, student)
    head_calls: list[str] = []
    for head in HEADS[name]:
        getattr(teacher, head).register_forward_hook(lambda m, i, o, head=head: head_calls.append(head))

    images, targets = _synthetic_batch(with_masks=name == "maskrcnn")
    levels = fpn_level_names(student)
    distiller = featdistill.Distiller(
        student,
        teacher,
        pairs=[(f"backbone[{k}]", f"backbone[{k}]") for k in levels],
        method="cwt",
        alpha=5e-7,
        sample_input=(images,),
        teacher_forward=lambda t, images, targets=None: t(images),
    )
    assert len(distiller.transforms) == len(levels)
    distiller.train()
    out = distiller(images, targets)
    assert isinstance(out.student, dict) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert len(out.losses) == len(levels)

    fpn_params = [p for p in student.backbone.fpn.parameters()]
    grads = torch.autograd.grad(out.loss, fpn_params, retain_graph=True)
    assert any(g.abs().sum() > 0 for g in grads)

    params = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    (sum(out.student.values()) + out.loss).backward()
    for transform in distiller.transforms:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in transform.parameters())
    optimizer.step()
    assert head_calls == []  # the teacher stops after its FPN: no rpn / roi_heads / head
    assert all(p.grad is None for p in teacher.parameters())
