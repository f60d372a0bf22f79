"""The detection plug-in end to end: a short coco128 run through the CLI, the teacher path, the recipes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools")

from featdistill.cli.main import main
from featdistill.config import load_config
from featdistill.distiller import Distiller
from featdistill.run import build_model
from featdistill.tasks.detection import CocoDetection, DetectionTask, build_detector

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "detection"
CPU_CONFIG = CONFIGS / "coco128_cpu_faster_rcnn_cwt.yaml"
COCO128 = REPO.parent / "shared" / "data" / "coco128"
# Faster R-CNN R18 student <- R34 teacher (random init) at 128 px, a few images: seconds on a CPU.
TINY = [
    f"data.root={COCO128}",
    "model.teacher_weights=null",
    "data.limit=2",
    "data.val_limit=2",
    "data.batch_size=1",
    "data.eval_batch_size=2",
    "train.epochs=1",
    "train.lr=0.001",
    "output.progress=false",
]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """One intra-op thread: small detector batches gain little from a second one, and on a loaded shared
    machine two threads spin at every parallel region (several times slower than one)."""
    torch.set_num_threads(1)


@pytest.fixture
def coco128() -> Path:
    if not (COCO128 / "annotations" / "instances.json").is_file():
        pytest.skip(f"coco128 not found at {COCO128}")
    return COCO128


def _args(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.mark.slow
def test_train_then_eval_through_the_cli(coco128: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(CPU_CONFIG), *_args(*TINY, f"output.dir={out}")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["bbox/AP"] <= 1.0 and "bbox/AP50" in metrics
    assert (out / "last.pt").is_file()
    with open(out / "log.csv") as f:
        columns = next(csv.reader(f))
    for term in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"):
        assert f"train/{term}" in columns
    assert [c for c in columns if c.startswith("train/cwt:")] == [
        f"train/cwt:backbone[{k}]" for k in range(4)
    ]
    capsys.readouterr()

    evaluate = ["eval", str(CPU_CONFIG), "--checkpoint", str(out / "last.pt")]
    assert main([*evaluate, *_args(*TINY, "data.val_limit=1", f"output.dir={out}")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == set(metrics)

    export = ["export", str(CPU_CONFIG), "--checkpoint", str(out / "last.pt"), *_args(*TINY)]
    assert main([*export, "--format", "torchscript", "--output", str(tmp_path / "student.ts")]) == 0
    assert main([*export, "--format", "onnx", "--output", str(tmp_path / "student.onnx")]) == 0
    student = DetectionTask(load_config(CPU_CONFIG, TINY)).build_student().eval()
    student.load_state_dict(torch.load(out / "last.pt", weights_only=True)["student"])
    image = [torch.rand(3, 96, 128)]
    scripted = torch.jit.load(str(tmp_path / "student.ts"))
    with torch.no_grad():
        expected, (_, got) = (
            student(image),
            scripted(image),
        )  # scripted torchvision detectors return (losses, dets)
    torch.testing.assert_close(got[0]["boxes"], expected[0]["boxes"])
    pytest.importorskip("onnx").checker.check_model(str(tmp_path / "student.onnx"))


@pytest.mark.slow
def test_teacher_heads_never_run_through_the_plugin(coco128: Path) -> None:
    cfg = load_config(CPU_CONFIG, [*TINY, "model.options.min_size=64", "model.options.max_size=96"])
    task = DetectionTask(cfg)
    train_loader, _ = task.build_loaders()
    model = build_model(cfg, task, torch.device("cpu"))
    assert isinstance(model, Distiller)
    assert [(p.student, p.teacher) for p in model.pairs] == [(f"backbone[{k}]",) * 2 for k in range(4)]
    teacher, student = model.teacher, model.student
    for attr in ("min_size", "max_size", "image_mean", "image_std", "size_divisible"):
        assert getattr(teacher.transform, attr) == getattr(student.transform, attr)

    calls: list[str] = []
    for name in ("backbone", "rpn", "roi_heads"):
        getattr(teacher, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    train_loader.set_epoch(0)
    batch = task.to_device(next(train_loader.iterate()), torch.device("cpu"))
    args, kwargs = task.forward_args(batch)
    model.train()
    out = model(*args, **kwargs)
    assert calls == ["backbone"]  # the teacher stops after its FPN: no RPN, no RoI heads
    terms = task.loss_terms(out.student, batch)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(terms)
    assert len(out.losses) == 4 and torch.isfinite(out.loss)


class _Oracle(torch.nn.Module):
    """A stand-in detector: the ground truth of the even-numbered images of ``dataset``, nothing elsewhere."""

    def __init__(self, dataset: CocoDetection) -> None:
        super().__init__()
        self.answers = {}
        for index in range(len(dataset)):
            image, target = dataset[index]
            n = len(target["boxes"]) if index % 2 == 0 else 0
            self.answers[self._key(image)] = {
                "boxes": target["boxes"][:n],
                "labels": target["labels"][:n],
                "scores": torch.ones(n),
            }

    @staticmethod
    def _key(image: torch.Tensor) -> tuple:
        return (*image.shape, round(float(image[:, :16, :16].sum()), 3))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.answers[self._key(image)] for image in images]


def _evaluate_shard(rank: int, world_size: int, store: str, overrides: list[str], out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
    )
    try:
        task = DetectionTask(load_config(CPU_CONFIG, overrides))
        _, val = task.build_loaders(rank, world_size)
        metrics = task.evaluate(_Oracle(val.dataset), val, torch.device("cpu"))
        Path(out, f"rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_evaluation_gathers_the_results_of_every_rank(coco128: Path, tmp_path: Path) -> None:
    overrides = [
        f"data.root={coco128}",
        "data.val_limit=5",
        "data.eval_batch_size=2",
        "data.options.save_results=true",
        f"output.dir={tmp_path}",
    ]
    task = DetectionTask(load_config(CPU_CONFIG, overrides))
    cpu, val = torch.device("cpu"), task.build_loaders()[1]
    oracle = _Oracle(val.dataset)
    alone = task.evaluate(oracle, val, cpu)
    assert 0.0 < alone["bbox/AP"] < 1.0
    results = json.loads((tmp_path / "results_bbox.json").read_text())
    assert {r["image_id"] for r in results} == set(val.dataset.ids[::2])
    assert task.evaluate(oracle, task.build_loaders(0, 2)[1], cpu)["bbox/AP"] == 1.0  # one rank's share

    (tmp_path / "results_bbox.json").unlink()
    args = (2, str(tmp_path / "store"), overrides, str(tmp_path))
    torch.multiprocessing.spawn(_evaluate_shard, args=args, nprocs=2)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == alone
    assert json.loads((tmp_path / "results_bbox.json").read_text()) == results  # all ranks', by rank 0


def test_default_pairs_match_fpn_levels_by_stride(coco128: Path) -> None:
    cfg = load_config(
        CPU_CONFIG,
        [
            f"data.root={coco128}",
            "model.teacher=retinanet",
            "model.teacher_weights=null",
            "model.options={min_size: 64, max_size: 96, student: {backbone: resnet18}, "
            "teacher: {backbone: resnet18}, distill_levels: 5}",
        ],
    )
    task = DetectionTask(cfg)
    assert task.num_classes == 81  # 80 categories + background, from the annotation file
    student, teacher = task.build_student(), task.build_teacher()
    # Faster R-CNN levels 0-3 + pool have strides 4-64; RetinaNet's 0, 1, 2, p6, p7 strides 8-128.
    assert task.default_pairs(student, teacher) == [
        ("backbone[1]", "backbone[0]"),
        ("backbone[2]", "backbone[1]"),
        ("backbone[3]", "backbone[2]"),
        ("backbone[pool]", "backbone[p6]"),
    ]


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("data.options.flip_prb=0.5", ValueError, "did you mean 'data.options.flip_prob'"),
        ("model.options.min_sise=256", ValueError, "did you mean 'model.options.min_size'"),
        (
            "model.options.student={backbon: resnet18}",
            ValueError,
            "did you mean 'model.options.student.backbone'",
        ),
        ("model.options.distill_levels=0", ValueError, "distill_levels must be 1 or more"),
        ("model.options.teacher={min_size: 256}", ValueError, "identical for student and teacher"),
        ("model.num_classes=3", ValueError, "must be 81"),
        ("data.options.scale_range=[0.5, 1.0]", ValueError, "1 <= low <= high"),
        ("data.options.ann_file=missing.json", FileNotFoundError, "set data.options.train_ann"),
    ],
)
def test_configuration_errors_name_the_key(coco128: Path, override: str, error: type, message: str) -> None:
    cfg = load_config(CPU_CONFIG, [f"data.root={coco128}", override])
    with pytest.raises(error, match=message):
        DetectionTask(cfg).build_loaders()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load_and_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task == "detection"
    task = DetectionTask(cfg)  # checks data.options and model.options
    for role, family in (("student", cfg.model.student), ("teacher", cfg.model.teacher)):
        if family is None:
            continue
        options = {**task.detector_options(role), "pretrained_backbone": None}  # weights are not here
        build_detector(family, 81, **options)  # every option is one the detector accepts
    if path.name.startswith("coco128_cpu"):
        assert cfg.device == "cpu" and cfg.model.options["min_size"] <= 160
    elif path.name.startswith("yolo_"):  # a starter for the user's own data
        assert cfg.data.name == "yolo" and cfg.data.root.startswith("data/")
    else:
        assert cfg.train.epochs == 24 and cfg.train.milestones == [16, 22]
        assert 8 * cfg.data.batch_size == 16 and cfg.train.lr in (0.02, 0.01)
        assert cfg.distill.alpha == 5e-7 and task.distill_levels == 4


def _one_category_coco(root: Path, images: int = 2) -> Path:
    """Images of one bright rectangle on noise, in a COCO json with one category (id 7): labels 0 and 1 only."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    entries, annotations = [], []
    for k in range(images):
        pixels = torch.randint(0, 80, (48, 64, 3), dtype=torch.uint8, generator=generator)
        x, y, w, h = 8 + 4 * k, 10, 30, 24
        pixels[y : y + h, x : x + w] = 220
        Image.fromarray(pixels.numpy()).save(root / "images" / f"{k}.png")
        entries.append({"id": k + 1, "file_name": f"{k}.png", "width": 64, "height": 48})
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        annotations.append(
            {
                "id": k + 1,
                "image_id": k + 1,
                "category_id": 7,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [polygon],
            }
        )
    categories = [{"id": 7, "name": "box"}]
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return ann


@pytest.mark.parametrize("family", ["fasterrcnn", "maskrcnn", "retinanet", "fcos"])
def test_every_detector_family_trains_and_evaluates(family: str, tmp_path: Path, monkeypatch) -> None:
    """One step and a COCO evaluation per family; RetinaNet/FCOS output the background label 0 here."""
    from featdistill.tasks.detection.evaluate import CocoEvaluator

    labels: list[int] = []
    update = CocoEvaluator.update

    def spy(self, outputs, *args, **kwargs):
        labels.extend(int(label) for out in outputs for label in out["labels"])
        return update(self, outputs, *args, **kwargs)

    monkeypatch.setattr(CocoEvaluator, "update", spy)
    _one_category_coco(tmp_path / "data")
    one_stage = family in ("retinanet", "fcos")
    # Few candidates keep the heads cheap; score threshold 0 keeps even an untrained model's detections.
    heads = (
        "topk_candidates: 20, detections_per_img: 10, score_thresh: 0.0"
        if one_stage
        else "rpn_pre_nms_top_n_train: 50, rpn_post_nms_top_n_train: 20, rpn_pre_nms_top_n_test: 50, "
        "rpn_post_nms_top_n_test: 20, box_batch_size_per_image: 16, box_detections_per_img: 10, "
        "box_score_thresh: 0.0"
    )
    overrides = [
        f"data.root={tmp_path / 'data'}",
        "data.options={ann_file: ann.json, images: images}",
        "data.limit=2",
        "data.val_limit=2",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        f"model.student={family}",
        "model.teacher=null",
        f"model.options={{min_size: 64, max_size: 96, backbone: resnet18, {heads}}}",
        "train.epochs=1",
        "train.lr=1e-9",  # the step leaves the heads as initialised: both labels score alike
        f"output.dir={tmp_path / 'run'}",
        "output.progress=false",
    ]
    assert main(["train", str(CPU_CONFIG), *_args(*overrides)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["bbox/AP"] <= 1.0
    assert ("segm/AP" in metrics) == (family == "maskrcnn")
    assert labels and set(labels) <= {0, 1}
    if one_stage:
        assert 0 in labels  # the background slot was predicted, and evaluation went on without it
    else:
        assert 0 not in labels  # torchvision's R-CNN heads never output the background
