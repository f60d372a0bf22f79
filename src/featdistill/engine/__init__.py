"""Training: the task-agnostic trainer, schedules, resumable loaders, atomic checkpoints, run logs."""

from .checkpoint import CheckpointError, load_safely, save_atomic
from .contract import NonFiniteLossError
from .loader import EpochSampler, ResumableLoader
from .trainer import Trainer

__all__ = [
    "CheckpointError",
    "EpochSampler",
    "NonFiniteLossError",
    "ResumableLoader",
    "Trainer",
    "load_safely",
    "save_atomic",
]
