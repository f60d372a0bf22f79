"""Logit losses. Unweighted: the distiller applies the method's α."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_dim(logits: torch.Tensor) -> int:
    """The class dimension of a logit tensor: 1 for (N, K) and dense (N, K, H, W) maps, -1 for (N, T, K) tokens.

    Dense maps keep classes in dim 1 (torchvision segmenters, conv heads); transformers put them last.
    """
    return 1 if logits.dim() != 3 else -1


def kd_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Hinton et al. (2015): KL(softmax(t/τ) ‖ softmax(s/τ)) over the classes, scaled by τ².

    The softmax is taken over :func:`class_dim`; the KL is averaged over every other position (samples,
    pixels of a (N, K, H, W) map, tokens of a (N, T, K) sequence), i.e. per-pixel or per-token KD.
    """
    dim = class_dim(teacher)
    student = student.movedim(dim, -1).reshape(-1, student.shape[dim])
    teacher = teacher.movedim(dim, -1).reshape(-1, teacher.shape[dim])
    log_p_student = F.log_softmax(student / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher / tau, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * tau**2
