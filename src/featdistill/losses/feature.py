"""Feature-map losses. Each is unweighted: the distiller applies the method's α in one place."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def squared_error_per_sample(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Σ over every non-batch element of (student − teacher)², divided by the batch size N.

    The loss of CWT (and of MGD): it grows with the feature size, which is why the paper's α is tiny, and
    it is invariant to repeating the batch.
    """
    return (student - teacher).pow(2).sum() / student.shape[0]


def mean_squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of (student − teacher)² over all elements: FitNets' hint loss."""
    return F.mse_loss(student, teacher)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over samples and positions of 1 − cos(student, teacher), the cosine taken over channels (dim 1).

    Blind to each position's feature norm, which in foundation models varies by orders of magnitude between
    layers and models (the loss RADIO and Theia use to match several teachers); 0 = same directions, 2 = opposite.
    """
    return (1 - F.cosine_similarity(student, teacher, dim=1, eps=1e-6)).mean()


def _attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention: mean over channels of |F|^p, flattened and L2-normalised."""
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_transfer(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Attention transfer (AT): mean squared difference of the normalised attention maps.

    Channels may differ; maps of different size are compared after adaptive average pooling of the
    larger one to the smaller size.
    """
    if student.shape[-2:] != teacher.shape[-2:]:
        size = min(student.shape[-2], teacher.shape[-2]), min(student.shape[-1], teacher.shape[-1])
        student, teacher = F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)
    return (_attention_map(student, p) - _attention_map(teacher, p)).pow(2).mean()


def channel_wise_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Channel-wise distillation (CWD, Shu et al. 2021): KL between per-channel spatial softmaxes.

    Each channel's H×W map becomes a distribution with temperature τ; the KL(teacher ‖ student) summed over
    positions and channels is scaled by τ² / (C · N).
    """
    n, c = student.shape[:2]
    log_p_student = F.log_softmax(student.flatten(2) / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher.flatten(2) / tau, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum()
    return kl * tau**2 / (c * n)
