"""``featdistill layers``: tappable layers with shapes, the pairs 'auto' chooses, the tapped FLOP share."""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.taps import trace_outputs
from featdistill.tasks.classification.models import build_classifier

BASE = tiny_tree(model={"teacher": None, "num_classes": 10}, distill={"pairs": [["layer1", "layer2"]]})


def _flops(forward) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops()


def test_layers_lists_shapes_auto_pairs_and_tapped_flops(tiny_config, capsys) -> None:
    assert main(["layers", str(tiny_config(base=BASE, model={"teacher": "resnet14"}))]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^student: resnet8 \(CifarResNet\), .* on the sample input \(2, 3, 16, 16\)$", out, re.M
    )
    assert re.search(r"^  layer3\s+\(2, 64, 4, 4\)$", out, re.M)
    assert re.search(r"^  layer1\.1\s+\(2, 16, 16, 16\)$", out, re.M)  # resnet14 has two blocks a stage
    assert "pairs 'auto' would choose: layer1->layer1, layer2->layer2, layer3->layer3" in out
    assert "  layer3->layer3: the stage output at 4x4 in both models" in out  # why each pair
    assert (
        "  left out:\n    student 'fc' and its layers: a head (it makes the predictions)" in out
    )  # and why not
    assert "pairs distilled (distill.pairs): layer1->layer2 [cwt]" in out

    # The share is the forward up to the tapped layer over the whole forward, counted independently.
    x = torch.randn(2, 3, 16, 16)
    s, t = build_classifier("resnet8", 10).eval(), build_classifier("resnet14", 10).eval()
    s_share = _flops(lambda: s.layer1(s.relu(s.bn1(s.conv1(x))))) / _flops(lambda: s(x))
    t_share = _flops(lambda: t.layer2(t.layer1(t.relu(t.bn1(t.conv1(x)))))) / _flops(lambda: t(x))
    assert 0.2 < s_share < t_share < 0.9
    assert f"student {100 * s_share:.1f}% (" in out
    assert f"teacher {100 * t_share:.1f}% (" in out


def test_layers_without_a_teacher_lists_the_student(tiny_config, capsys) -> None:
    assert main(["layers", str(tiny_config(base=BASE))]) == 0
    out = capsys.readouterr().out
    assert "student: resnet8" in out and "teacher:" not in out
    assert out.rstrip().endswith("no model.teacher in the config: no pairs")


def test_unsafe_outputs_are_listed_with_the_reason() -> None:
    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True), relu, relu)
    found = trace_outputs(net, lambda m: m(torch.randn(1, 3, 2, 2)), include_unsafe=True)
    assert {o.name: o.unsafe for o in found} == {"0": "modified in place", "1": "", "2": "ran 2 times"}
    assert [o.name for o in trace_outputs(net, lambda m: m(torch.randn(1, 3, 2, 2)))] == ["1"]
