import torch

import featdistill as fd
from featdistill.tasks.classification.models import build_classifier


def test_auto_pairs_on_cifar_resnets():
    student, teacher = build_classifier("resnet8", 10), build_classifier("resnet32", 10)
    d = fd.Distiller(student, teacher, pairs="auto", sample_input=torch.randn(2, 3, 32, 32), verbose=False)
    assert [(p.student, p.teacher) for p in d.pairs] == [
        ("layer1", "layer1"),
        ("layer2", "layer2"),
        ("layer3", "layer3"),
    ]
    shapes = [t.layers[0].in_channels for t in d.transforms]
    assert shapes == [16, 32, 64]
