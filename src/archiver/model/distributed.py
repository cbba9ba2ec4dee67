"""Data-parallel training under PyTorch's launcher: ``torchrun --nproc_per_node N archiver pack …``.

Every process trains on its own random crops; DistributedDataParallel averages the gradients (gloo on
CPUs, NCCL on GPUs; several nodes through torchrun's rendezvous). The per-step loss and the stop
decision are all-reduced so that every rank stops at the same step; rank 0 alone checkpoints and writes
the archive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


__all__ = ["DistInfo", "init_distributed", "agree", "all_gather", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``world`` processes, this one is ``rank`` (0 writes)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)  # NCCL's object collectives use the current device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def agree(info: DistInfo, loss: float, stop: bool, device: torch.device, save: bool = False) -> tuple[float, bool, bool]:
    """Mean loss over ranks; stop if any rank says so; save a checkpoint if any (rank 0) says so.
    One all-reduce of three numbers, so that every rank stops and checkpoints at the same step."""
    if not info.enabled:
        return loss, stop, save
    t = torch.tensor([loss, float(stop), float(save)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]) / info.world, bool(t[1] > 0), bool(t[2] > 0)


def all_gather(world: int, obj) -> list:
    """``obj`` from every rank, in rank order (all ranks must call it together); ``[obj]`` alone."""
    if world <= 1:
        return [obj]
    out: list = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier(world: int) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if world > 1:
        dist.barrier()
