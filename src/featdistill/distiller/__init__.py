"""Orchestrating: the Distiller and the table of methods it can apply per layer pair."""

from .distiller import Distiller, DistillOutput, Pair
from .methods import METHODS, Method, get_method

__all__ = ["METHODS", "DistillOutput", "Distiller", "Method", "Pair", "get_method"]
