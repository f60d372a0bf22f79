"""Orchestrating: the Distiller and the table of methods it can apply per layer pair."""

from .balancer import LossBalancer
from .distiller import Distiller, DistillOutput
from .methods import METHODS, Method, get_method, register_method
from .pairs import Pair
from .shared_teacher import SharedTeacher

__all__ = [
    "METHODS",
    "DistillOutput",
    "Distiller",
    "LossBalancer",
    "Method",
    "Pair",
    "SharedTeacher",
    "get_method",
    "register_method",
]
