"""Aligning: modules that map a student feature to the shape of the teacher feature it is compared with."""

from .base import FeatureTransform
from .connectors import FitNetsRegressor, Identity, MGDGenerator
from .cwt import ChannelWiseTransform

__all__ = ["ChannelWiseTransform", "FeatureTransform", "FitNetsRegressor", "Identity", "MGDGenerator"]
