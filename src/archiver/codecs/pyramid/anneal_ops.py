"""The annealing's two fused steps (:mod:`archiver.codecs.pyramid.anneal`): soft rounding with
noise, and the packed latent's Laplace bits, each an autograd function whose derivative is made in
the forward pass (benchmarks/results/anneal-throughput.md: what they saved against autograd)."""

from __future__ import annotations

import math

import torch

from .model import _LOG2

__all__: list[str] = []


class _SoftNoisy(torch.autograd.Function):
    """``sr_t(sr_t(y) + u)`` (``u`` None: ``sr_t(y)``; :func:`soft_round`) with its derivative
    made in the forward pass, ``sr_t'(x) = (1 − tanh²(Δ/t)) / (2t·tanh(1/(2t)))``: a dozen
    elementwise operations a step instead of about thirty through autograd."""

    @staticmethod
    def forward(ctx, y, t: float, u):  # noqa: D102
        c = 1.0 / (2.0 * math.tanh(0.5 / t))
        out, slope = _soft_round_slope(y, t, c)
        if u is not None:
            out, outer = _soft_round_slope(out.add_(u), t, c)
            slope.mul_(outer)
        ctx.save_for_backward(slope)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def _soft_round_slope(x: torch.Tensor, t: float, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`soft_round` of ``x``, its derivative), ``c`` = 1 / (2 tanh(1 / (2t)))."""
    f = torch.floor(x)
    th = torch.tanh((x - f).sub_(0.5).div_(t))
    slope = (1.0 - th * th).mul_(c / t)
    return th.mul_(c).add_(f).add_(0.5), slope


class _PackedBits(torch.autograd.Function):
    """Per-image bits of the packed latent ``y`` (N, C, h, w) under Laplace bins of means ``mu`` and
    inverse scales ``inv_b`` in the same packed layout (:func:`archiver.codecs.pyramid.model.laplace_bits`,
    summed per image), with a hand-written backward to ``y`` only.

    With d = |y − μ| and β the inverse scale, the bin's probability is p = 1 − ½(e⁻ⁱ + e⁻ᵒ) at the
    mode (d < ½) and ½(e⁻ⁱ − e⁻ᵒ) beyond it, i = |d − ½|β, o = (d + ½)β; in both cases
    dp/dd = −β(e⁻ⁱ − e⁻ᵒ)/2, so d bits/dy = sign(y − μ)·β(e⁻ⁱ − e⁻ᵒ)/(2p ln 2) (0 where p is clamped
    at 1e-9). One tensor for every level, and the gradient made in the forward pass: some 15
    elementwise operations a step instead of about 200 through autograd, level by level."""

    @staticmethod
    def forward(ctx, y, mu, inv_b):  # noqa: D102
        diff = y - mu
        d = diff.abs()
        outer = torch.exp(-(d + 0.5) * inv_b)
        inner = torch.exp(-(d - 0.5).abs_() * inv_b)
        p = torch.where(d < 0.5, 1.0 - 0.5 * (inner + outer), 0.5 * (inner - outer))
        clamped = p <= 1e-9 if ctx.needs_input_grad[0] else None
        p.clamp_min_(1e-9)
        if clamped is not None:
            slope = (inner - outer).mul_(inv_b).div_(p).mul_(0.5 / _LOG2)
            ctx.save_for_backward(slope.mul_(diff.sign_()).masked_fill_(clamped, 0.0))
        return torch.log(p).sum(dim=(1, 2, 3)) * (-1.0 / _LOG2)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (slope,) = ctx.saved_tensors
        return slope * grad[:, None, None, None], None, None
