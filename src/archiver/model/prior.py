"""Differentiable per-channel prior used for the rate term during training.

Each latent channel gets a discretized logistic distribution with learned location and scale. At
pack time the real coder does not use these floats: :mod:`archiver.codec.tables` counts the actual
integer latents into integer frequency tables, which is what makes decoding bit-exact everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ChannelPrior", "quantize_ste", "add_uniform_noise"]

_LOG2 = math.log(2.0)


def quantize_ste(y: torch.Tensor) -> torch.Tensor:
    """Round to integers in the forward pass, identity gradient in the backward pass."""
    return y + (torch.round(y) - y).detach()


def add_uniform_noise(y: torch.Tensor) -> torch.Tensor:
    """Additive U(-0.5, 0.5) noise: the differentiable stand-in for rounding in the rate term."""
    return y + torch.empty_like(y).uniform_(-0.5, 0.5)


class ChannelPrior(nn.Module):
    """Discretized logistic per latent channel: p(y) = σ((y+½−μ)/s) − σ((y−½−μ)/s)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """Information content in bits of every element of the (noisy or rounded) latent ``y``."""
        loc = self.loc.view(1, -1, 1, 1)
        inv_scale = torch.exp(-self.log_scale).view(1, -1, 1, 1)
        upper = (y + 0.5 - loc) * inv_scale
        lower = (y - 0.5 - loc) * inv_scale
        # Difference of sigmoids computed on the side of the mode that keeps precision.
        sign = torch.where(lower + upper > 0, -1.0, 1.0)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return -torch.log(p.clamp_min(1e-9)) / _LOG2
