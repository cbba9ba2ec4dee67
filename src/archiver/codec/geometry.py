"""Sizes an image is coded at and the latent grid that follows (no torch: decoders need it too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["STRIDE", "padded_size", "latent_grid", "Tile", "tiles"]

#: Pixels per latent position along each side.
STRIDE = 16


def padded_size(height: int, width: int, min_size: int = 0, stride: int = STRIDE) -> tuple[int, int]:
    """Size an image is coded at, in pixels: at least ``min_size`` (the training crop), rounded up to
    ``stride``. The padding is on the bottom/right and replicates the edge pixels."""
    h, w = max(height, min_size), max(width, min_size)
    return -(-h // stride) * stride, -(-w // stride) * stride


def latent_grid(height: int, width: int, min_size: int = 0, stride: int = STRIDE) -> tuple[int, int]:
    """(rows, columns) of the latent of an image of ``height`` × ``width`` pixels."""
    ph, pw = padded_size(height, width, min_size, stride)
    return ph // stride, pw // stride


class Tile(NamedTuple):
    """One tile of a grid: the kept centre ``[y0, y1) × [x0, x1)`` and the read window
    ``[ya, yb) × [xa, xb)`` (the centre plus up to ``halo`` around it, clipped to the grid)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ya: int
    yb: int
    xa: int
    xb: int


def tiles(height: int, width: int, tile: int, halo: int) -> Iterator[Tile]:
    """Tiles of ``tile`` × ``tile`` covering a ``height`` × ``width`` grid in raster order, each read
    with ``halo`` of context: the one tile-and-halo loop of the runtime decoder, the denoiser, the
    tiled encoder and the latent refinement (each in its own units: positions or pixels)."""
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            yield Tile(y0, y1, x0, x1, max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo))
