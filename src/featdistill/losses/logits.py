"""Logit losses. Unweighted: the distiller applies the method's α."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Hinton et al. (2015): KL(softmax(t/τ) ‖ softmax(s/τ)) averaged over the batch, scaled by τ².

    Logits are (N, K); any extra dimensions are folded into the batch (e.g. per-token logits).
    """
    student = student.reshape(-1, student.shape[-1])
    teacher = teacher.reshape(-1, teacher.shape[-1])
    log_p_student = F.log_softmax(student / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher / tau, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * tau**2
