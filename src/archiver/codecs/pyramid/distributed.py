"""The pyramid's training under ``torchrun --nproc_per_node N -m archiver pack … --codec pyramid``.

Every process trains on its own random crops (its generator is seeded with its rank); the whole
:class:`~archiver.codecs.pyramid.model.PyramidCodec` (analysis, synthesis, context network and steps)
is wrapped in DistributedDataParallel, so gradients are averaged and the weights stay identical on
every rank. What decides the schedule is agreed before it is used, so that every rank takes the same
branch at the same step: the clock (the slowest rank's: time limit and coarse-first phase) and
whether a checkpoint is due (rank 0's) in one all-reduce at the top of a step; the loss the
convergence detector sees (the mean over ranks) after it; the held-back PSNR (mean) at a check.
Rank 0 alone writes checkpoints, holding every rank's random generators so that a resumed run with
the same number of processes continues exactly. In a single process every helper here is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ...errors import InputError
from ...model.distributed import DistInfo, agree, all_gather, init_distributed

__all__ = ["DistInfo", "join", "wrap", "agree_clock", "mean", "gather_rngs", "rank_rngs"]


def join(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group (if any); the device this rank trains on (its own GPU)."""
    info = init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    return info, device


def wrap(codec: nn.Module, info: DistInfo) -> nn.Module:
    """The module whose forward training calls: ``codec`` itself, or under torchrun the codec in
    DistributedDataParallel (which first makes every rank's weights rank 0's)."""
    if not info.enabled:
        return codec
    return nn.parallel.DistributedDataParallel(codec)


def agree_clock(info: DistInfo, elapsed: float, save: bool, device: torch.device) -> tuple[float, bool]:
    """(the largest ``elapsed`` over ranks, whether any rank asks for a checkpoint)."""
    if not info.enabled:
        return elapsed, save
    t = torch.tensor([elapsed, float(save)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0]), bool(t[1] > 0)


def mean(info: DistInfo, value: float, device: torch.device) -> float:
    """``value`` averaged over ranks."""
    return agree(info, value, False, device)[0]


def gather_rngs(info: DistInfo, rngs) -> list:
    """Every rank's random generators, in rank order (all ranks call it together)."""
    return all_gather(info.world, rngs)


def rank_rngs(saved: dict, info: DistInfo, folder) -> tuple:
    """This rank's generators in a checkpoint (an error when it was made by another number of
    processes: the crop sequences would not continue)."""
    world = saved.get("world", 1)
    if world != info.world:
        raise InputError(
            f"{folder}: checkpoint was made by {world} training process(es), this run has {info.world}; "
            "resume with the same number of processes"
        )
    return saved.get("rank_rngs", [saved.get("rngs")])[info.rank]
