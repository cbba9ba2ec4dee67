"""The ``wavefront`` context order of the ``pyramid`` coder (pyramid codec version 4): every latent
is predicted from its parent's five values and its four causal neighbours, and a group's images are
coded together, in an order that decodes many positions at once.

**Tiles and steps.** Each level is cut into square tiles of ``context_tile`` positions a side
(the last row and column of tiles may be smaller). A position's own-level neighbours are read only
inside its tile, so all tiles (and all images of a group) decode side by side. Inside a tile, the
position at tile coordinates (a, b) is decoded at step ``t = 2a + b``: its left (t − 1), up-left
(t − 3), up (t − 2) and up-right (t − 1) neighbours are all earlier. A level therefore takes at most
``3 · context_tile − 2`` steps, whatever the image size.

**Coding order** of a group of ``n`` images of one size: levels from the coarsest (L-1) to full size
(0); in a level, steps t ascending; in a step, the positions (image, row, column) with that t in
raster order (image first), then stably sorted by bucket (ascending). A position's features
(:func:`wavefront_features`) go through the level's network (:meth:`ContextNet.run`, phase 0); the
symbol coded is ``y − mean`` with table ``bucket``, exactly as the checkerboard order.
"""

from __future__ import annotations

import numpy as np

from .pyramid_net import FEATURE_CLIP, padded
from .pyramid_plan import CAUSAL_NEIGHBOURS, NEIGHBOURS, PyramidSpec

__all__ = [
    "LevelPlan", "PARENT_FEATURES", "FEATURES", "wavefront_features", "parent_features", "causal_features",
    "level_residuals", "encode_group", "decode_group",
]  # fmt: skip

#: Features read from the coarser level (its value and its four neighbours), then all features
#: before the level's one-hot (those and the causal neighbours):
#: :func:`archiver.codec.pyramid_plan.context_features_count` minus the levels.
PARENT_FEATURES = 1 + len(NEIGHBOURS)
FEATURES = PARENT_FEATURES + len(CAUSAL_NEIGHBOURS)


class LevelPlan:
    """Positions of one level of a group (``n`` images of ``h`` × ``w``) in coding order.

    ``img``, ``rows``, ``cols``: int64 arrays of every position sorted by step (raster within one);
    ``bounds[t]:bounds[t + 1]`` is step t's slice; ``inside``: (4, positions) booleans, whether each
    causal neighbour lies in the position's tile (and the grid)."""

    def __init__(self, n: int, h: int, w: int, tile: int) -> None:
        flat = np.arange(n * h * w, dtype=np.int64)
        img, rest = np.divmod(flat, h * w)
        rows, cols = np.divmod(rest, w)
        a, b = rows % tile, cols % tile
        t = 2 * a + b
        order = np.argsort(t, kind="stable")  # stable: image-major raster order within a step
        self.img, self.rows, self.cols = img[order], rows[order], cols[order]
        a, b = a[order], b[order]
        self.bounds = np.concatenate([[0], np.cumsum(np.bincount(t, minlength=1))]).astype(np.int64)
        last_col = self.cols + 1 < w
        self.inside = np.stack([b > 0, (a > 0) & (b > 0), a > 0, (a > 0) & (b + 1 < tile) & last_col])

    @property
    def steps(self) -> int:
        return len(self.bounds) - 1


def wavefront_features(parent: np.ndarray | None, own: np.ndarray, plan: LevelPlan, sl: slice) -> np.ndarray:
    """(:data:`FEATURES`, k) float64 integer features of the plan's positions ``sl``: the parent's
    rows (:func:`parent_features`), then the causal neighbours' (:func:`causal_features`).

    ``parent``: the coarser level padded (:func:`~archiver.codec.pyramid_net.padded`) or None;
    ``own``: this level padded, with every position before ``sl``'s step already written."""
    feats = np.empty((FEATURES, sl.stop - sl.start), dtype=np.float64)
    parent_features(parent, plan, sl, out=feats[:PARENT_FEATURES])
    causal_features(own, plan, sl, out=feats[PARENT_FEATURES:])
    return feats


def parent_features(parent: np.ndarray | None, plan: LevelPlan, sl: slice, out: np.ndarray | None = None) -> np.ndarray:
    """(:data:`PARENT_FEATURES`, k): the parent's value and its neighbours up, down, left, right
    (:data:`NEIGHBOURS`), all 0 at the coarsest level (``parent`` None). Known before a level
    starts: the decoder computes their part of the first layer once per level."""
    img, rows, cols = plan.img[sl], plan.rows[sl], plan.cols[sl]
    out = np.empty((PARENT_FEATURES, img.size), dtype=np.float64) if out is None else out
    if parent is None:
        out[:] = 0.0
        return out
    _, hp, wp = parent.shape
    at = img * (hp * wp) + (rows // 2 + 1) * wp + (cols // 2 + 1)
    flat = parent.ravel()
    np.take(flat, at, out=out[0])
    for k, (dy, dx) in enumerate(NEIGHBOURS, 1):
        np.take(flat, at + (dy * wp + dx), out=out[k])
    return out


def causal_features(own: np.ndarray, plan: LevelPlan, sl: slice, out: np.ndarray | None = None) -> np.ndarray:
    """(len(CAUSAL_NEIGHBOURS), k): the values of the causal neighbours left, up-left, up, up-right
    (:data:`CAUSAL_NEIGHBOURS`), 0 outside the position's tile: what a decoding step computes."""
    img, rows, cols = plan.img[sl], plan.rows[sl], plan.cols[sl]
    out = np.empty((len(CAUSAL_NEIGHBOURS), img.size), dtype=np.float64) if out is None else out
    _, ho, wo = own.shape
    at = img * (ho * wo) + (rows + 1) * wo + (cols + 1)
    flat = own.ravel()
    for k, (dy, dx) in enumerate(CAUSAL_NEIGHBOURS):
        np.take(flat, at + (dy * wo + dx), out=out[k])
        out[k] *= plan.inside[k, sl]
    return out


def level_residuals(coder, images: list[list[np.ndarray]]):
    """For every level of a group in coding order: (level, plan, residual, bucket), the residuals
    ``y − mean`` and buckets of the plan's positions, computed from the complete grids (the
    encoder's view: a position's features are what the decoder has when it reaches it).
    ``images[i][level]``: (h_l, w_l) ints, all images of one size."""
    spec: PyramidSpec = coder.spec
    parent = None
    for level in reversed(range(spec.levels)):
        grids = np.stack([g[level] for g in images]).astype(np.int64)
        plan = LevelPlan(*grids.shape, spec.context_tile)
        own = padded(grids)
        mean, bucket = coder.net.run(0, level, wavefront_features(parent, own, plan, slice(0, plan.img.size)))
        yield level, plan, grids[plan.img, plan.rows, plan.cols] - mean, bucket
        parent = own


def encode_group(coder, encoder, images: list[list[np.ndarray]]) -> None:
    """Code a group's grids into ``encoder`` in the wavefront order (``coder``: the
    :class:`~archiver.codec.pyramid_coder.PyramidCoder` with the network and tables)."""
    for level, plan, residual, bucket in level_residuals(coder, images):
        for t in range(plan.steps):
            lo, hi = plan.bounds[t], plan.bounds[t + 1]
            if hi > lo:
                coder._encode_step(encoder, level, residual[lo:hi], bucket[lo:hi])


def decode_group(coder, decoder, count: int, height: int, width: int) -> list[list[np.ndarray]]:
    """Inverse of :func:`encode_group`: ``count`` images' grids (level 0 first, int32) of an image
    coded at ``height`` × ``width`` pixels. The first layer's sum over the parent's five features (and
    the bias) is computed once per level; each step adds its neighbours' part (exact: integers)."""
    spec: PyramidSpec = coder.spec
    out: list[list[np.ndarray]] = [[None] * spec.levels for _ in range(count)]  # type: ignore[list-item]
    parent = None
    for level in reversed(range(spec.levels)):
        h, w = height >> level, width >> level
        grids = np.zeros((count, h, w), dtype=np.int64)
        own = np.zeros((count, h + 2, w + 2), dtype=np.float64)
        plan = LevelPlan(count, h, w, spec.context_tile)
        fixed = coder.net.first_layer(0, level, parent_features(parent, plan, slice(0, plan.img.size)), features=FEATURES)
        for t in range(plan.steps):
            sl = slice(plan.bounds[t], plan.bounds[t + 1])
            if sl.stop == sl.start:
                continue
            causal = causal_features(own, plan, sl)
            mean, bucket = coder.net.finish(0, fixed[:, sl] + coder.net.first_layer(0, level, causal, PARENT_FEATURES, bias=False))
            values = coder._decode_phase(decoder, mean, bucket)
            img, rows, cols = plan.img[sl], plan.rows[sl], plan.cols[sl]
            grids[img, rows, cols] = values
            own[img, rows + 1, cols + 1] = np.clip(values, -FEATURE_CLIP, FEATURE_CLIP)
        for i in range(count):
            out[i][level] = grids[i].astype(np.int32)
        parent = own
    return out
