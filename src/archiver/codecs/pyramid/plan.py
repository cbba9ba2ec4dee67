"""The ``pyramid`` codec's description as plain data (no torch): grids, synthesis layers, context
features. Shared by the torch model (:mod:`archiver.codecs.pyramid.model`), the ONNX synthesis graph and the
integer entropy coder, so the three agree on every layer and every feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import _Serializable

__all__ = [
    "PyramidSpec", "SynthLayer", "context_features_count", "context_macs_per_pixel", "PYRAMID_PRESETS", "pack_grids", "unpack_grids",
]  # fmt: skip

#: Neighbour offsets (dy, dx) the context reads, in this order: up, down, left, right.
NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: Own-level neighbours a ``wavefront`` context reads, in this order: left, up-left, up, up-right. All
#: are decoded before (i, j) when a tile is coded in wavefronts ``t = 2i + j``.
CAUSAL_NEIGHBOURS: tuple[tuple[int, int], ...] = ((0, -1), (-1, -1), (-1, 0), (-1, 1))
#: Context orders a spec may name: ``checkerboard`` (two phases a level: anchors see only the
#: coarser level) and ``wavefront`` (one phase; every latent also sees its four causal neighbours
#: inside its tile). Measured on the pyramid-b1 latents of 64 heldout crops with context networks
#: retrained for 100 s each: wavefront codes them in 30 % fewer bits at q4 (0.75 vs 1.10 bpp), 26 %
#: at q8; a four-phase order saves 17 %, one reading only the two rows above 21 %.
CONTEXT_ORDERS: tuple[str, ...] = ("checkerboard", "wavefront")


@dataclass(frozen=True)
class SynthLayer:
    """One synthesis layer: a ``kernel``×``kernel`` convolution ``cin`` → ``cout`` ('same' padding),
    then LeakyReLU when ``act``, then added to its input when ``residual``."""

    kernel: int
    cin: int
    cout: int
    act: bool
    residual: bool = False


@dataclass(frozen=True)
class PyramidSpec(_Serializable):
    """What the ``pyramid`` decoder is: everything a reader needs besides the weights.

    Attributes:
        channels: latent channels of each level; level l is at 1/2**l of each side (level 0 = full size).
        hidden: widths of the 1×1 layers after the upsampled grids are concatenated.
        refine: number of 3×3 RGB→RGB residual layers at the end.
        encoder_width: feature channels of the encoder (pack time only; not stored weights).
        context_hidden: width of the context MLP's two hidden layers.
        leaky_slope: negative slope of the synthesis' LeakyReLUs.
        context: the context order, one of :data:`CONTEXT_ORDERS` (absent in specs written before
            ``wavefront`` existed: ``checkerboard``).
        context_tile: side of the square tiles a ``wavefront`` level is cut into (positions of that
            level); a latent reads no neighbour outside its tile, so tiles decode side by side and a
            level takes at most ``3 · context_tile − 2`` sequential steps whatever the image size.
    """

    channels: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    hidden: tuple[int, ...] = (32, 16)
    refine: int = 2
    encoder_width: int = 24
    context_hidden: int = 16
    leaky_slope: float = 0.2
    context: str = "checkerboard"
    context_tile: int = 64

    def __post_init__(self) -> None:
        if self.context not in CONTEXT_ORDERS:
            raise ValueError(f"unknown pyramid context order {self.context!r}; known: {', '.join(CONTEXT_ORDERS)}")
        if not 1 <= int(self.context_tile) <= 4096:
            raise ValueError(f"pyramid context_tile {self.context_tile} is outside 1 … 4096")

    @property
    def phases(self) -> int:
        """Context networks (phases of a level): 2 for ``checkerboard``, 1 for ``wavefront``."""
        return 2 if self.context == "checkerboard" else 1

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.context == "checkerboard":  # the document of specs written before the field existed
            del out["context"], out["context_tile"]
        return out

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def stride(self) -> int:
        """Pixels an image is padded to a multiple of (the coarsest grid's cell)."""
        return 1 << (self.levels - 1)

    def blocks(self) -> list[tuple[int, int]]:
        """(first channel, block side) of each level in the packed latent (see :func:`pack_grids`)."""
        out, first = [], 0
        for level, c in enumerate(self.channels):
            side = 1 << (self.levels - 1 - level)
            out.append((first, side))
            first += c * side * side
        return out

    @property
    def packed_channels(self) -> int:
        """Channels of the packed latent: every level's values at the coarsest grid's positions."""
        first, side = self.blocks()[-1]
        return first + self.channels[-1] * side * side

    def synthesis_plan(self) -> list[SynthLayer]:
        """The synthesis' layers in order."""
        plan, cin = [], sum(self.channels)
        for width in self.hidden:
            plan.append(SynthLayer(1, cin, width, act=True))
            cin = width
        plan.append(SynthLayer(1, cin, 3, act=False))
        plan += [SynthLayer(3, 3, 3, act=False, residual=True) for _ in range(self.refine)]
        return plan

    def macs_per_pixel(self) -> float:
        """Multiply–accumulates per output pixel of the synthesis (bilinear upsampling counted as 4
        MAC per upsampled value)."""
        total = 4.0 * sum(self.channels[1:])
        for layer in self.synthesis_plan():
            total += layer.kernel * layer.kernel * layer.cin * layer.cout
        return total


def context_macs_per_pixel(spec: PyramidSpec) -> float:
    """Multiply–accumulates of the context network per pixel: each level's positions (1/4**l of the
    pixels), half in each phase; the one-hot of the level costs nothing (it is a bias)."""
    total, hid = 0.0, spec.context_hidden
    phases = range(spec.phases)
    for level, c in enumerate(spec.channels):
        per = sum((context_features_count(spec, p) - spec.levels) * hid + hid * hid + hid * 2 for p in phases) / len(phases)
        total += c * per / 4**level
    return total


def context_features_count(spec: PyramidSpec, phase: int) -> int:
    """Inputs of the context MLP: parent and its 4 neighbours (5), the 4 own-level neighbours (anchor
    neighbours in checkerboard phase 1, causal neighbours in ``wavefront``), a one-hot of the level."""
    own = 4 if (phase == 1 or spec.context == "wavefront") else 0
    return 5 + own + spec.levels


def pack_grids(spec: PyramidSpec, grids: list[np.ndarray]) -> np.ndarray:
    """The grids of one image, (channels[l], H / 2**l, W / 2**l) each, as one (packed_channels, h, w)
    array at the coarsest grid's positions (h = H / stride): level l's block of side b = 2**(L-1-l)
    becomes b·b·channels[l] channels, channel ``(by · b + bx) · channels[l] + c`` holding
    ``grid[c, y · b + by, x · b + bx]`` (ONNX DepthToSpace, mode DCR, undoes it)."""
    parts = []
    for g, (_, b) in zip(grids, spec.blocks()):
        c, hh, ww = g.shape
        parts.append(g.reshape(c, hh // b, b, ww // b, b).transpose(2, 4, 0, 1, 3).reshape(b * b * c, hh // b, ww // b))
    return np.concatenate(parts, 0)


def unpack_grids(spec: PyramidSpec, packed: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pack_grids`."""
    _, h, w = packed.shape
    grids = []
    for c, (first, b) in zip(spec.channels, spec.blocks()):
        block = packed[first : first + b * b * c].reshape(b, b, c, h, w)
        grids.append(block.transpose(2, 3, 0, 4, 1).reshape(c, h * b, w * b))
    return grids


#: The spec ``pack --codec pyramid`` uses (its base: ``pyramid-b3``). The context network's hidden
#: layers are 12 wide, not 16, because that network is a large part of the wavefront decoder's time
#: (synthetic: one thread, six 512×768 streams, 2.47 Mpx/s at 12 wide against 1.83 at 16,
#: benchmarks/results/entropy-speed.md; on a real 48-photo album the gain was smaller, about 5 %),
#: and 12 wide coded pyramid-b2's heldout latents within ±1.2 % of the bits of 16 wide
#: (context-orders-neighbours.md; context-orders-hidden.md: +1.3 … +2.2 %). Its wavefront tiles are
#: 128 positions a side since the step was compiled (2026-12-07; 64 before): a latent at a tile's edge
#: reads fewer neighbours, and larger tiles took 0.8 % off the latent bytes of 16 train album photos
#: (the same latents and network, tables counted per tile: 64 861,076 B, 128 854,176, 256 851,036),
#: for more sequential steps (48 crops of 256²: 732 at 64, 1,116 at 128). 48 heldout crops packed the
#: api-speed way: 390,281 B at 64, 388,294 at 128, 385,844 at 256 (same PSNR ± 0.01 dB); fresh
#: extracts, alternating, median of 6: 1.49, 1.51 and 1.62 s. The shipped base serves any tile.
PYRAMID_PRESETS: dict[str, PyramidSpec] = {"default": PyramidSpec(context="wavefront", context_hidden=12, context_tile=128)}
