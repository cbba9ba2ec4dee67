"""Latents for a new image when the decoder and the entropy tables are fixed (``append``).

An archive keeps its decoder, and its encoder only when packed ``appendable``, so a later image is
coded by searching (or, from the encoder's latent, refining) the latent
that minimises the rate–distortion loss through the stored int8 decoder: Adam on a continuous latent,
straight-through rounding for the distortion, and a rate read from the archive's own integer tables
(−log2 of each channel's probabilities, linearly interpolated between integers so it has a slope).
The latent is kept inside each channel's table support, so every symbol stays codable with the
archive's unchanged tables.
"""

from __future__ import annotations

import numpy as np
import torch

from ...codec.geometry import latent_grid
from ...codec.context import ContextTables
from ...codec.tables import FrequencyTables
from .model import Decoder, Encoder, pad_to_stride
from .inference import encode_tiled, to_tensor
from ...model.refine import REFINE_LR, refine_latent

__all__ = ["TableRate", "search_latent", "SEARCH_LR"]

#: Adam step on the latent, in quantization steps, when the search starts at each channel's mode
#: (from the encoder's latent it is pack's refinement step, :data:`archiver.model.refine.REFINE_LR`).
SEARCH_LR = 0.1


class TableRate:
    """Differentiable bits of a latent under fixed per-channel integer tables."""

    def __init__(self, tables: FrequencyTables | ContextTables) -> None:
        if isinstance(tables, ContextTables):  # contexts pooled: a search has no context to offer
            tables = tables.marginal()
        c, width = tables.channels, int(tables.lengths.max())
        bits = np.full((c, width), 0.0, dtype=np.float32)
        for ch in range(c):
            n = int(tables.lengths[ch])
            bits[ch, :n] = -np.log2(tables.probabilities(ch))
            bits[ch, n:] = bits[ch, n - 1]
        self.bits = torch.from_numpy(bits)  # (C, L) bits of symbol offset+k
        self.low = torch.from_numpy(tables.offsets.astype(np.float32)).view(1, -1, 1, 1)
        self.high = self.low + torch.from_numpy((tables.lengths - 1).astype(np.float32)).view(1, -1, 1, 1)
        self.mode = torch.from_numpy(tables.modes().astype(np.float32)).view(1, -1, 1, 1)

    def clamp(self, y: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(y, self.high), self.low)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """Total bits of ``y`` (1, C, h, w), interpolated between the integers."""
        k = (self.clamp(y) - self.low)[0]  # (C, h, w), in [0, length - 1]
        k0 = k.detach().floor().clamp(max=self.bits.shape[1] - 1)
        k1 = (k0 + 1).clamp(max=self.bits.shape[1] - 1)
        frac = k - k0
        c = k.shape[0]
        flat0 = k0.long().view(c, -1)
        flat1 = k1.long().view(c, -1)
        b0 = torch.gather(self.bits, 1, flat0).view_as(k)
        b1 = torch.gather(self.bits, 1, flat1).view_as(k)
        return (b0 + frac * (b1 - b0)).sum()


def search_latent(
    decoder: Decoder,
    tables: FrequencyTables | ContextTables,
    rgb: np.ndarray,
    lmbda: float,
    steps: int,
    min_size: int = 0,
    encoder: Encoder | None = None,
) -> np.ndarray:
    """Integer latent (C, h, w) int32 of ``rgb`` for the fixed ``decoder`` and ``tables``.

    Without ``encoder`` the search starts at each channel's most probable symbol, with Adam steps of
    :data:`SEARCH_LR`; with one (an appendable archive) it starts at the encoder's latent and refines
    it with the smaller steps of :data:`~archiver.model.refine.REFINE_LR` (``steps`` may then be 0:
    the encoder's latent, rounded into the tables' support). Large images are optimised tile by tile.
    """
    rate = TableRate(tables)
    x = to_tensor(rgb)
    height, width = x.shape[-2:]
    padded = pad_to_stride(x, min_size=min_size)
    if encoder is not None:
        with torch.no_grad():
            y = rate.clamp(encode_tiled(encoder, padded))
    else:
        gh, gw = latent_grid(height, width, min_size)
        y = rate.mode.expand(1, tables.channels, gh, gw).clone()
    y = refine_latent(
        decoder, padded, y, rate, lmbda, steps, (height, width),
        lr=SEARCH_LR if encoder is None else REFINE_LR, clamp=rate.clamp, cosine=True,
    )  # fmt: skip
    return rate.clamp(torch.round(y.detach()))[0].to(torch.int32).numpy()
