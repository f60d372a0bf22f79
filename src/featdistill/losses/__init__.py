"""Comparing: unweighted losses between an aligned student feature and the teacher feature."""

from .feature import (
    attention_transfer,
    channel_wise_divergence,
    cosine_distance,
    mean_squared_error,
    squared_error_per_sample,
)
from .logits import kd_divergence

__all__ = [
    "attention_transfer",
    "channel_wise_divergence",
    "cosine_distance",
    "kd_divergence",
    "mean_squared_error",
    "squared_error_per_sample",
]
