"""The segmentation plug-in end to end: CLI train/eval on real CamVid, distillation steps, shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import load_config, parse_config
from featdistill.distiller import Distiller
from featdistill.run import build_model
from featdistill.tasks.segmentation import build_segmenter
from featdistill.tasks.segmentation.task import SegmentationTask

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "segmentation").glob("*.yaml"))


def _tree(root: Path | str, out: Path, **model: object) -> dict:
    """The tiny segmentation run on ``root``, a PSPNet teacher, the model settings of ``model`` (no options)."""
    data = {"root": str(root), "train_split": "train", "limit": 4, "val_limit": 2}
    return tiny_tree(
        out,
        "segmentation",
        drop=["model.options"],
        data=data,
        model={"teacher": "pspnet", **model},
        distill={"method": "cwt", "alpha": 2e-5},
        train={"schedule": "poly", "log_every": 1},
    )


def test_cli_train_and_eval_on_camvid(tmp_path: Path, shared_data: Path, capsys) -> None:
    tree = _tree(
        shared_data / "camvid",
        tmp_path / "run",
        options={"channels": 32, "student": {"backbone": "resnet18"}, "teacher": {"backbone": "resnet18"}},
    )
    # CWT on the last backbone stage plus the opt-in CWD pair on the logits ("output" = the model's output)
    tree["distill"]["pairs"] = [
        ["backbone.layer4", "backbone.layer4", "cwt"],
        ["output[out]", "output[out]", "cwd"],
    ]
    tree["distill"]["alpha"] = {"cwt": 2e-5, "cwd": 3.0}
    cfg = tmp_path / "camvid.yaml"
    cfg.write_text(yaml.safe_dump(tree))

    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 100.0 and 0.0 <= metrics["pixel_acc"] <= 100.0
    assert all(0.0 <= v <= 100.0 for k, v in metrics.items() if k.startswith("iou/"))
    assert (run / "last.pt").is_file()
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    for column in (
        "train/ce",
        "train/aux_ce",
        "train/cwt:backbone.layer4",
        "train/cwd:output[out]",
        "val/miou",
    ):
        assert column in header
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["transforms"]) > 0

    capsys.readouterr()
    ckpt = str(run / "last.pt")
    assert main(["eval", str(cfg), "--checkpoint", ckpt]) == 0
    assert json.loads(capsys.readouterr().out)["miou"] == pytest.approx(metrics["miou"])
    slide = ["--set", "data.options.eval_mode=slide", "--set", "data.options.window=[128, 160]"]
    assert main(["eval", str(cfg), "--checkpoint", ckpt, *slide]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["miou"] <= 100.0

    exported = tmp_path / "student.ts"
    assert (
        main(["export", str(cfg), "--checkpoint", ckpt, "--format", "torchscript", "--output", str(exported)])
        == 0
    )
    student = SegmentationTask(load_config(cfg)).build_student().eval()
    student.load_state_dict(torch.load(ckpt, weights_only=True)["student"])
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(exported))(x)["out"], student(x)["out"])


@pytest.mark.parametrize(
    ("student", "teacher", "teacher_options"),
    [
        ("pspnet", "pspnet", {"backbone": "resnet50", "channels": 64}),  # a narrow head keeps the test fast
        ("deeplabv3", "pspnet", {"backbone": "resnet50", "channels": 64}),  # the pair of cityscapes_deeplabv3
    ],
)
def test_distillation_step_through_the_plugin(
    tmp_path: Path, student: str, teacher: str, teacher_options: dict
) -> None:
    student_options = {"backbone": "resnet18"}
    if student == "deeplabv3":
        student_options["atrous_rates"] = [1, 2, 3]  # rates 12/24/36 on an 8x8 map only make it slow
    options = {"student": student_options, "teacher": teacher_options}
    tree = _tree("unused", tmp_path, student=student, teacher=teacher, options=options)
    cfg = parse_config(tree)
    task = SegmentationTask(cfg)
    distiller = build_model(cfg, task, torch.device("cpu"))
    assert isinstance(distiller, Distiller)
    assert [(p.student, p.teacher, p.method) for p in distiller.pairs] == [
        ("backbone.layer4", "backbone.layer4", "cwt")
    ]
    images = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 11, (2, 64, 64))
    labels[:, :8] = 255
    distiller.train()
    out = distiller(*task.forward_args((images, labels))[0])
    terms = {**task.loss_terms(out.student, (images, labels)), **out.losses}
    assert set(terms) == {"ce", "aux_ce", "cwt:backbone.layer4"}
    torch.stack(list(terms.values())).sum().backward()
    assert distiller.student.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in distiller.transforms.parameters())
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_options_per_side_and_clear_errors(tmp_path: Path) -> None:
    tree = _tree("unused", tmp_path, options={"aux": False, "teacher": {"backbone": "resnet34", "aux": True}})
    task = SegmentationTask(parse_config(tree))
    assert task.build_student().aux_classifier is None
    teacher = task.build_teacher()
    assert teacher.aux_classifier is not None and len(teacher.backbone.layer3) == 6  # ResNet-34
    assert tuple(task.sample_input().shape) == (2, 3, 64, 64)

    labels = torch.full((2, 8, 8), 255)
    assert task.loss_terms({"out": torch.randn(2, 11, 8, 8)}, (None, labels))["ce"].item() == 0.0

    torchvision_model = build_segmenter("deeplabv3", 11, backbone="resnet50")  # IntermediateLayerGetter
    assert task.default_pairs(teacher, torchvision_model) == [("backbone.layer4", "backbone.layer4")]

    tree["data"]["options"]["crop"] = 64
    with pytest.raises(
        ValueError,
        match=r"unknown config key 'data\.options\.crop'; did you mean 'data\.options\.crop_size'\?",
    ):
        SegmentationTask(parse_config(tree))


def test_num_classes_must_match_the_data(tmp_path: Path, shared_data: Path) -> None:
    tree = _tree(shared_data / "camvid", tmp_path, num_classes=19)
    with pytest.raises(ValueError, match=r"camvid has 11 classes but model\.num_classes is 19"):
        SegmentationTask(parse_config(tree)).build_loaders()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task == "segmentation"
    SegmentationTask(cfg)  # data.options are checked here


def test_ranks_share_the_data_and_sum_confusion_matrices(tmp_path: Path, shared_data: Path) -> None:
    tree = _tree(shared_data / "camvid", tmp_path)
    tree["data"].update(limit=8, val_limit=5)
    task = SegmentationTask(parse_config(tree))
    shares = [task.build_loaders(rank, 2) for rank in (0, 1)]
    assert [len(train) for train, _ in shares] == [2, 2]  # 4 images per rank, batches of 2
    assert [len(val.dataset) for _, val in shares] == [3, 2]  # disjoint, nothing counted twice

    model = torch.nn.Conv2d(3, 11, 1)
    batches = [(torch.randn(2, 3, 8, 8), torch.randint(0, 11, (2, 8, 8)))]
    alone = task.evaluate(model, batches, torch.device("cpu"))
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:  # the confusion matrix goes through all_reduce (a sum over one rank here)
        assert task.evaluate(model, batches, torch.device("cpu")) == alone
    finally:
        torch.distributed.destroy_process_group()
