"""Several processes, one or more machines: process group from torchrun's environment, DDP, rank helpers.

``torchrun --nproc_per_node=N -m featdistill train CONFIG`` starts N processes; each calls
:func:`init_distributed`, which reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``)
set by torchrun, picks NCCL for CUDA and Gloo for CPU, and binds the process to ``cuda:LOCAL_RANK``. Each
process trains on its slice of every global batch (``data.batch_size`` samples per process), and
:func:`wrap_ddp` wraps the ``Distiller`` (student + transforms) in DistributedDataParallel, which averages
their gradients. The frozen teacher is not a submodule of the Distiller, so DDP never sees, broadcasts or
synchronises it: every process runs its own copy under ``no_grad``.

Started without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistributedContext",
    "broadcast_buffers",
    "cleanup",
    "init_distributed",
    "is_main",
    "mean_across_ranks",
    "sync_batchnorm",
    "world_size",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its global and local rank, the number of processes, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs, shows progress and writes checkpoints (global rank 0)."""
        return self.rank == 0


def _grouped() -> bool:
    """Whether this process is in an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer") from None


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    """One GPU per process: ``cuda`` (any index) becomes ``cuda:LOCAL_RANK``; other devices are kept."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(
            f"local rank {local_rank} needs GPU {local_rank} but this machine has {count} CUDA device(s); "
            "start at most one process per GPU (torchrun --nproc_per_node <= number of GPUs)"
        )
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device | str = "cpu") -> DistributedContext:
    """Join the process group that torchrun describes in the environment; a no-op for a single process.

    Args:
        device: the device the run asked for. With several processes a CUDA device becomes
            ``cuda:LOCAL_RANK`` and the backend is NCCL; a CPU device uses Gloo.

    Returns:
        this process's :class:`DistributedContext`. A process group that is already initialised (e.g. by
        your own training script) is reused as it is.
    """
    device = torch.device(device)
    if _grouped():
        rank, size = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))
        return DistributedContext(
            rank, local_rank, size, _rank_device(device, local_rank), dist.get_backend()
        )
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return DistributedContext(device=device)
    missing = [v for v in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={size} but {', '.join(missing)} not set; start the processes with torchrun "
            "(e.g. torchrun --nproc_per_node=2 -m featdistill train CONFIG)"
        )
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed support; run a single process")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _rank_device(device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=size)
    return DistributedContext(rank, local_rank, size, device, backend)


def is_main() -> bool:
    """True in a single process and on global rank 0 (torchrun's ``RANK`` before the group exists)."""
    if _grouped():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if _grouped() else 1


def cleanup() -> None:
    """Leave and destroy the process group, if any (call once at the end of a run)."""
    if _grouped():
        dist.destroy_process_group()


def sync_batchnorm(student: nn.Module, ctx: DistributedContext) -> nn.Module:
    """Convert the student's BatchNorm layers to SyncBatchNorm (statistics over the global batch).

    A no-op for a single process. Raises ValueError on CPU: torch's SyncBatchNorm only synchronises
    GPU (and XPU/HPU) tensors and fails in the first training step on CPU tensors.
    """
    if not ctx.is_distributed:
        return student
    if ctx.device.type == "cpu":
        raise ValueError(
            "train.sync_bn needs GPUs: torch's SyncBatchNorm does not run on CPU (Gloo) tensors; set "
            "train.sync_bn: false (BatchNorm then uses the data.batch_size samples of each process)"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(student)


def wrap_ddp(model: nn.Module, ctx: DistributedContext) -> nn.Module:
    """Wrap ``model`` (a Distiller or a plain student, already on ``ctx.device``) in DDP when distributed.

    Every parameter of a Distiller gets a gradient in every step (the student runs to its output; each
    transform is used by its pair; ``kd``/``at`` transforms have no parameters), so DDP runs without
    ``find_unused_parameters`` and its extra graph traversal.
    """
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy ``module``'s buffers (e.g. BatchNorm running statistics) from rank ``src`` to every rank."""
    if world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src)


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes, in place (``values`` itself for one process).

    Evaluation counts (correct predictions, confusion matrices) are summed this way before the metrics.
    """
    if _grouped():
        dist.all_reduce(values)
    return values


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over all processes (``values`` itself for one process)."""
    if world_size() == 1:
        return values
    total = values.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def barrier() -> None:
    """Wait for every process (a no-op in a single process), e.g. until rank 0 has written a file all read."""
    if _grouped():
        dist.barrier()
