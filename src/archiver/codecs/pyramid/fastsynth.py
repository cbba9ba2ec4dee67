"""The pyramid's synthesis computed for optimization: the same function as
:class:`~archiver.codecs.pyramid.export.PackedSynthesis` (to float rounding), laid out for the
per-image latent optimization's many forward and backward passes on a CPU.

- **Upsampling as matrices.** Bilinear upsampling (``align_corners=False``) of a grid by ``2**l``
  is separable: ``up(g) = A_h · g · A_wᵀ``, with ``A`` the interpolation of the identity (so the
  weights and the edge clamping are torch's own). Two small matrix products per level replace
  ``upsample_bilinear2d`` and its backward.
- **The 1×1 layers as one GEMM chain** on each image's (channels × pixels) matrix, the layout the
  levels are concatenated in (no transposed copy), with a hand-written backward for the input only
  (the weights are fixed while latents are optimized): one batched product and an in-place bias
  per layer forward, one product back, the leaky ReLUs applied in place and their slopes read back
  from the kept activations' signs.
- The 3×3 residual refinement stays a convolution, on a channels-last copy of the chain's output.
  One annealing step of 16 crops of 128²: 46–50 ms, against 53–55 ms with the chain on one
  (pixels × channels) matrix (a transposed copy of the input) and a channels-last view after it.

Measured on 16 crops of 128², a forward and backward pass of the annealing's loss, 2 cores: see
:data:`archiver.codecs.pyramid.anneal` and benchmarks/results/anneal-throughput.md.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .export import unpack_torch

__all__ = ["OptimSynthesis", "upsample_matrix"]


def upsample_matrix(n: int, factor: int, dtype=torch.float32) -> torch.Tensor:
    """(n · factor, n): bilinear upsampling of a length-``n`` axis by ``factor``, as
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` computes it along one axis."""
    eye = torch.eye(n, dtype=dtype)[:, None, :, None]  # n images of one channel, n × 1 each
    up = F.interpolate(eye, size=(n * factor, 1), mode="bilinear", align_corners=False)
    return up[:, 0, :, 0].t().contiguous()


class _Chain(torch.autograd.Function):
    """``X`` (N, C, P) through the 1×1 layers ``[(W, b, act)]``; gradient for ``X`` only."""

    @staticmethod
    def forward(ctx, x, slope, *layers):  # layers: W0, b0, W1, b1, ...
        acts, h = [], x
        n = len(layers) // 2
        for k in range(n):
            w, b = layers[2 * k], layers[2 * k + 1]
            h = torch.matmul(w, h).add_(b[:, None])
            if k < n - 1:
                F.leaky_relu_(h, slope)
                acts.append(h)
        ctx.save_for_backward(*acts, *layers[0::2])
        ctx.slope, ctx.n = slope, n
        return h

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        n = ctx.n
        acts, weights = saved[: n - 1], saved[n - 1 :]
        g = grad
        for k in reversed(range(n)):
            g = torch.matmul(weights[k].t(), g)
            if k > 0:  # through the activation after layer k - 1 (one fused pass, from its output)
                g = torch.ops.aten.leaky_relu_backward(g, acts[k - 1], ctx.slope, True)
        return (g, None) + (None,) * (2 * n)


class OptimSynthesis(nn.Module):
    """``PackedSynthesis``'s function (packed latent (N, C, h, w) → RGB (N, 3, H, W)) for images of
    one size, built from one (its weights copied, nothing trained)."""

    def __init__(self, packed) -> None:
        super().__init__()
        self.spec, self.steps = packed.spec, packed.steps
        synthesis = packed.synthesis
        self.slope = float(self.spec.leaky_slope)
        plan = synthesis.plan
        ones = [k for k, layer in enumerate(plan) if layer.kernel == 1]
        if ones != list(range(len(ones))) or any(plan[k].residual for k in ones):
            raise ValueError("OptimSynthesis: the plan must start with its 1×1 layers")
        self.chain = [t for k in ones for t in (synthesis.layers[k].weight.detach()[:, :, 0, 0].contiguous(),
                                                 synthesis.layers[k].bias.detach())]  # fmt: skip
        #: :meth:`forward` takes per-image tails (:mod:`archiver.codecs.pyramid.tail_fit`): the last
        #: 1×1 layer has a hidden layer before it
        self.takes_tails = len(self.chain) >= 4
        self.rest = [(layer, synthesis.layers[k]) for k, layer in enumerate(plan) if k not in ones]
        self._ups: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _matrices(self, h: int, w: int, factor: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, factor, device)
        if key not in self._ups:
            self._ups[key] = (upsample_matrix(h, factor).to(device), upsample_matrix(w, factor).t().contiguous().to(device))
        return self._ups[key]

    def forward(self, packed: torch.Tensor, tail: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """RGB + ½ of ``packed``; ``tail``: per-image (ΔW (N, 3, C), Δb (N, 3)) added to the last
        1×1 layer's (autograd through them and that layer's input)."""
        grids = unpack_torch(self.spec, packed)
        n, _, height, width = grids[0].shape
        columns = []
        for level, g in enumerate(grids):
            g = g * self.steps[level]
            if level:
                a_h, a_wt = self._matrices(g.shape[-2], g.shape[-1], height // g.shape[-2], g.device)
                g = torch.matmul(torch.matmul(a_h, g), a_wt)
            columns.append(g.reshape(n, -1, height * width))
        x = torch.cat(columns, 1)
        if tail is None:
            out = _Chain.apply(x, self.slope, *self.chain)  # (N, C, H·W)
        else:  # the last layer with each image's own deltas
            h = F.leaky_relu(_Chain.apply(x, self.slope, *self.chain[:-2]), self.slope)
            out = torch.matmul(self.chain[-2] + tail[0], h) + (self.chain[-1] + tail[1])[..., None]
        x = out.reshape(n, -1, height, width).contiguous(memory_format=torch.channels_last)
        for layer, conv in self.rest:
            y = conv(x)
            if layer.act:
                y = F.leaky_relu(y, self.slope)
            x = x + y if layer.residual else y
        return x + 0.5
