"""Sizes an image is coded at and the latent grid that follows (no torch: decoders need it too)."""

from __future__ import annotations

__all__ = ["STRIDE", "padded_size", "latent_grid"]

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
