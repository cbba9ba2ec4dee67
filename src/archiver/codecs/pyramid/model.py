"""The ``pyramid`` codec's torch side: an encoder that predicts a pyramid of latent grids, a tiny
synthesis shared by the collection, and a checkerboard context model giving each latent a mean and a
scale from what is already decoded.

Grids: level ``l`` (0 … L-1) has ``channels[l]`` channels at ``1 / 2**l`` of each side, so level 0 is
full resolution. An image is coded padded to a multiple of ``2**(L-1)`` pixels. Every level is
quantized with its own step (per ``--quality`` gains), ``ŷ = round(y / step)``; the synthesis sees
``ŷ · step``. The plan of the synthesis (layer kinds and widths) lives in
:mod:`archiver.codecs.pyramid.plan`, shared with the ONNX graph.

The context model (training proxy of the integer coder in :mod:`archiver.codecs.pyramid.coder`):
levels are coded coarsest first, each in two checkerboard phases. A symbol's features are integers
already decoded: phase 0 (anchors, ``(i + j)`` even) sees the coarser level's values around its
parent; phase 1 also sees its four anchor neighbours. With the ``wavefront`` context order a level is
one phase: every symbol sees its parent's five values and its four causal neighbours (left, up-left,
up, up-right) inside its tile. A small MLP turns the features into a mean and a log-scale; the rate
is that of a discretized Laplace.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .plan import CAUSAL_NEIGHBOURS, PyramidSpec, context_features_count

__all__ = ["PyramidEncoder", "PyramidSynthesis", "ContextModel", "PyramidCodec", "laplace_bits", "laplace_inverse_scale"]

_LOG2 = math.log(2.0)


class PyramidEncoder(nn.Module):
    """RGB in [0, 1] → L float grids (N, channels[l], H / 2**l, W / 2**l). Pack time only."""

    def __init__(self, spec: PyramidSpec) -> None:
        super().__init__()
        w = spec.encoder_width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 5, padding=2), nn.LeakyReLU(spec.leaky_slope),
            nn.Conv2d(w, w, 3, padding=1), nn.LeakyReLU(spec.leaky_slope),
        )  # fmt: skip
        self.heads = nn.ModuleList(nn.Conv2d(w, c, 3, padding=1) for c in spec.channels)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w, w, 4, stride=2, padding=1), nn.LeakyReLU(spec.leaky_slope),
                          nn.Conv2d(w, w, 3, padding=1), nn.LeakyReLU(spec.leaky_slope))
            for _ in spec.channels[1:]
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.stem(x - 0.5)
        grids = [self.heads[0](f)]
        for down, head in zip(self.downs, self.heads[1:]):
            f = down(f)
            grids.append(head(f))
        return grids


class PyramidSynthesis(nn.Module):
    """Dequantized grids → RGB: each grid upsampled (bilinear) to full size, concatenated, then 1×1
    layers and 3×3 residual refinement, as :func:`archiver.codecs.pyramid.plan.synthesis_plan` says."""

    def __init__(self, spec: PyramidSpec) -> None:
        super().__init__()
        self.spec = spec
        self.plan = spec.synthesis_plan()  # once: forward runs every training step
        layers: list[nn.Module] = []
        for layer in self.plan:
            layers.append(nn.Conv2d(layer.cin, layer.cout, layer.kernel, padding=layer.kernel // 2))
        self.layers = nn.ModuleList(layers)

    def upsample(self, grids: list[torch.Tensor]) -> torch.Tensor:
        h, w = grids[0].shape[-2:]
        ups = [grids[0]] + [
            F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False) for g in grids[1:]
        ]
        return torch.cat(ups, dim=1)

    def forward(self, grids: list[torch.Tensor]) -> torch.Tensor:
        x = self.upsample(grids)
        for layer, conv in zip(self.plan, self.layers):
            y = conv(x)
            if layer.act:
                y = F.leaky_relu(y, self.spec.leaky_slope)
            x = x + y if layer.residual else y
        return x + 0.5


def laplace_inverse_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """1 / b of the context's Laplace for a predicted ln b, clamped to [−4, 8] as every rate here
    reads it (:func:`laplace_bits`, the annealing's packed rate)."""
    return torch.exp(-log_scale.clamp(-4.0, 8.0))


def laplace_bits(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Bits of integer-valued (or noisy) ``y`` under a Laplace(mu, exp(log_scale)) discretized to
    unit bins: −log2(F(y + ½) − F(y − ½))."""
    inv_b = laplace_inverse_scale(log_scale)
    d = torch.abs(y - mu)
    # P = F(d + ½) − F(d − ½). On the far side of the mode (d ≥ ½): ½ (exp(−(d − ½)/b) − exp(−(d + ½)/b));
    # at the mode (d < ½) the bin straddles it: 1 − ½ exp(−(½ − d)/b) − ½ exp(−(d + ½)/b). Both
    # read exp(−|d − ½|/b) and exp(−(d + ½)/b): two exponentials (the annealing's packed rate,
    # anneal_ops._PackedBits, computes the same two with its own gradient).
    outer = torch.exp(-(d + 0.5) * inv_b)
    inner = torch.exp(-torch.abs(d - 0.5) * inv_b)
    p = torch.where(d < 0.5, 1.0 - 0.5 * (inner + outer), 0.5 * (inner - outer))
    return -torch.log(p.clamp_min(1e-9)) / _LOG2


class ContextModel(nn.Module):
    """Features of already-decoded integers → (mean, log-scale) per symbol, one MLP per phase shared
    by the levels (the level enters as a one-hot)."""

    def __init__(self, spec: PyramidSpec) -> None:
        super().__init__()
        self.spec = spec
        self.mlps = nn.ModuleList()
        for phase in range(spec.phases):
            n = context_features_count(spec, phase)
            hid = spec.context_hidden
            self.mlps.append(nn.Sequential(nn.Linear(n, hid), nn.ReLU(), nn.Linear(hid, hid), nn.ReLU(), nn.Linear(hid, 2)))

    def features(self, grids: list[torch.Tensor], level: int, phase: int) -> torch.Tensor:
        """(N, F, h, w) features of every position of level ``level`` for ``phase``."""
        g = grids[level]
        n, c, h, w = g.shape
        feats = []
        if level + 1 < len(grids):
            parent = grids[level + 1]
            up = F.interpolate(parent, scale_factor=2, mode="nearest")[..., :h, :w]
            pad = F.pad(parent, (1, 1, 1, 1))
            # The parent's four neighbours, at the child's resolution.
            for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
                nb = pad[..., dy : dy + parent.shape[-2], dx : dx + parent.shape[-1]]
                feats.append(F.interpolate(nb, scale_factor=2, mode="nearest")[..., :h, :w])
            feats.insert(0, up)
        else:
            feats += [torch.zeros_like(g)] * 5
        if self.spec.context == "wavefront":
            feats += _causal_neighbours(g, self.spec.context_tile)
        elif phase == 1:
            anchors = g * _anchor(h, w, g.device)
            pad = F.pad(anchors, (1, 1, 1, 1))
            for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
                feats.append(pad[..., dy : dy + h, dx : dx + w])
        onehot = torch.zeros(n, self.spec.levels, h, w, device=g.device, dtype=g.dtype)
        onehot[:, level] = 1.0
        return torch.cat(feats + [onehot], dim=1)

    def forward(self, grids: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mu, log_scale) per level, each (N, channels, h, w); anchors from phase 0, others phase 1."""
        out = []
        for level, g in enumerate(grids):
            h, w = g.shape[-2:]
            if self.spec.phases == 1:
                p = self.mlps[0](self.features(grids, level, 0).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                out.append((p[:, :1], p[:, 1:2]))
                continue
            anchor = _anchor(h, w, g.device).bool()
            params = []
            for phase in (0, 1):
                f = self.features(grids, level, phase).permute(0, 2, 3, 1)
                params.append(self.mlps[phase](f).permute(0, 3, 1, 2))
            p = torch.where(anchor, params[0], params[1])
            out.append((p[:, :1], p[:, 1:2]))
        return out


def _causal_neighbours(g: torch.Tensor, tile: int) -> list[torch.Tensor]:
    """The values at :data:`CAUSAL_NEIGHBOURS` of every position of ``g`` (N, C, h, w); 0 where the
    neighbour is outside the grid or in another ``tile``×``tile`` tile."""
    h, w = g.shape[-2:]
    pad = F.pad(g, (1, 1, 1, 1))
    i = torch.arange(h, device=g.device).view(-1, 1)
    j = torch.arange(w, device=g.device).view(1, -1)
    out = []
    for dy, dx in CAUSAL_NEIGHBOURS:
        # floor division puts -1 in tile -1: the tile test also excludes rows and columns before 0
        inside = ((i + dy) // tile == i // tile) & ((j + dx) // tile == j // tile) & (j + dx < w)
        out.append(pad[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] * inside.to(g.dtype))
    return out


def _anchor(h: int, w: int, device) -> torch.Tensor:
    i = torch.arange(h, device=device).view(-1, 1)
    j = torch.arange(w, device=device).view(1, -1)
    return ((i + j) % 2 == 0).float()


class PyramidCodec(nn.Module):
    """Encoder + synthesis + context model + per-quality quantization steps (log, per level)."""

    def __init__(self, spec: PyramidSpec, qualities: int = 8) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = PyramidEncoder(spec)
        self.synthesis = PyramidSynthesis(spec)
        self.context = ContextModel(spec)
        self.log_steps = nn.Parameter(torch.zeros(qualities, spec.levels))

    def steps(self, quality: int) -> torch.Tensor:
        return torch.exp(self.log_steps[quality - 1])

    def forward(self, x: torch.Tensor, quality: int, noise: bool = True, coarse_from: int = 0):
        """(x_hat, total bits) for a batch. Levels below ``coarse_from`` are held at zero (the coarse
        first phase of training, see :mod:`archiver.codecs.pyramid.train`)."""
        steps = self.steps(quality)
        grids = self.encoder(x)
        scaled = [g / steps[i] * (0.0 if i < coarse_from else 1.0) for i, g in enumerate(grids)]
        hard = [s + (torch.round(s) - s).detach() for s in scaled]
        x_hat = self.synthesis([q * steps[i] for i, q in enumerate(hard)])
        rate_in = [s + torch.empty_like(s).uniform_(-0.5, 0.5) for s in scaled] if noise else hard
        # The context sees the rounded values (what the decoder has); gradients flow via the symbol.
        ctx_in = [torch.round(s).detach() for s in scaled]
        params = self.context(ctx_in)
        bits = sum(laplace_bits(r, mu, ls).sum() for r, (mu, ls) in zip(rate_in, params))
        return x_hat, bits
