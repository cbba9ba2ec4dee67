"""What training sees of a collection: all of it when it fits a pixel budget, else a seeded pool of
tiles drawn in proportion to image area, read one image at a time (memory stays bounded whatever the
collection's size)."""

from __future__ import annotations

import numpy as np

from .images import SourceImage

__all__ = ["POOL_PIXELS", "POOL_TILE", "RESIDENT_BYTES", "PairPool", "training_set"]

#: Decoded pixels (uint8 RGB bytes) pack keeps in memory after reading the collection; images read
#: beyond it are released and read again from disk when needed.
RESIDENT_BYTES = 1 << 30
#: Largest training set, in pixels (3 bytes each): a larger collection trains on a pool of tiles.
POOL_PIXELS = 128_000_000
#: Side of a pool tile, in pixels: twice the default training crop, so crops inside it still vary.
POOL_TILE = 256


def _tile_counts(areas: list[int], budget: int, rng: np.random.Generator) -> list[int]:
    """Tiles per image: ``budget / tile area`` in all, in proportion to area, stochastic rounding."""
    total = float(sum(areas))
    want = budget / (POOL_TILE * POOL_TILE)
    counts = []
    for area in areas:
        expected = want * area / total
        whole = int(expected)
        counts.append(whole + int(rng.random() < expected - whole))
    if not any(counts):  # a tiny budget may round to nothing: training needs something
        counts[int(np.argmax(areas))] = 1
    return counts


def _cut(rgb: np.ndarray, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    th, tw = min(POOL_TILE, h), min(POOL_TILE, w)
    out = []
    for _ in range(count):
        y = int(rng.integers(0, h - th + 1))
        x = int(rng.integers(0, w - tw + 1))
        out.append((y, x, th, tw))
    return out


def training_set(images: list[SourceImage], seed: int, budget: int | None = None) -> list[np.ndarray]:
    """The (H, W, 3) uint8 arrays training samples crops from: every image if their pixels fit
    ``budget``, else tiles of :data:`POOL_TILE` pixels (fewer pixels than ``budget``), each image read
    once and released. ``budget`` defaults to :data:`POOL_PIXELS`."""
    budget = POOL_PIXELS if budget is None else budget
    areas = [im.height * im.width for im in images]
    if sum(areas) <= budget:
        return [im.full().rgb for im in images]
    rng = np.random.default_rng([seed, 0x9001])
    out: list[np.ndarray] = []
    for im, count in zip(images, _tile_counts(areas, budget, rng)):
        if count:
            rgb = im.full().rgb
            out += [rgb[y : y + th, x : x + tw].copy() for y, x, th, tw in _cut(rgb, rng, count)]
    return out


class PairPool:
    """The denoiser's (reconstruction, original) training pairs, fed one image at a time in the order
    of ``areas``: whole images while the collection fits ``budget`` pixels, else co-located tiles."""

    def __init__(self, areas: list[int], seed: int, budget: int | None = None) -> None:
        budget = POOL_PIXELS if budget is None else budget
        self.whole = sum(areas) <= budget
        self._rng = np.random.default_rng([seed, 0x9002])
        self._counts = iter([] if self.whole else _tile_counts(areas, budget, self._rng))
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, recon: np.ndarray, original: np.ndarray) -> None:
        if self.whole:
            self.pairs.append((recon, original))
            return
        for y, x, th, tw in _cut(original, self._rng, next(self._counts)):
            self.pairs.append((recon[y : y + th, x : x + tw].copy(), original[y : y + th, x : x + tw].copy()))
