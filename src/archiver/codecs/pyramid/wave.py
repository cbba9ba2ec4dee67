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
(:func:`step_features`) go through the level's network (:meth:`ContextNet.run`, phase 0); the
symbol coded is ``y − mean`` with table ``bucket``, exactly as the checkerboard order.

**Several streams in one pass.** Nothing a position reads lies outside its own image, so the groups
of an archive whose images have one size can be decoded side by side as well: :func:`decode_streams`
runs the steps once for all of them (each stream's symbols still come from its own range decoder,
in its own order). The per-step cost (some 60 numpy calls and one network run, 0.1–0.2 ms) is
then paid once for many images instead of once per group: that cost is what limited the decoding
of photo albums, where every photo is a group of its own.

**Layout.** A level of ``n`` images of one size is held image after image: ``(n, h + 2, w + 2)``
with a border of zeros (what neighbours outside the grid read) for the features (the decoder's in
:data:`FEATURE_DTYPE`), ``(n, h · w)`` for the values. One image's positions sorted by step (:class:`WavePlan`, made once per size) give
every image's: a step's positions are a ``(n, k)`` block, image-major, which is the coding order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import native
from .net import BUCKETS, FEATURE_CLIP, SCRATCH, padded
from .plan import CAUSAL_NEIGHBOURS, NEIGHBOURS, PyramidSpec

__all__ = [
    "WavePlan", "PARENT_FEATURES", "FEATURES", "MAX_STREAMS", "step_features", "level_residuals",
    "encode_group", "decode_streams",
]  # fmt: skip

#: Features read from the coarser level (its value and its four neighbours), then all features
#: before the level's one-hot (those and the causal neighbours):
#: :func:`archiver.codecs.pyramid.plan.context_features_count` minus the levels.
PARENT_FEATURES = 1 + len(NEIGHBOURS)
FEATURES = PARENT_FEATURES + len(CAUSAL_NEIGHBOURS)
#: The decoder's copies of the levels (what the features read) hold values clipped to
#: ±FEATURE_CLIP: int16 holds them exactly in a quarter of float64's bytes. A step reads and writes
#: positions scattered over every image's grid (48 photos: 43 MB at full size instead of 171 MB),
#: and 16-bit gathers and scatters ran 1.9× and 3.7× faster than 64-bit ones (measured).
FEATURE_DTYPE = np.int16
#: Most streams :func:`decode_streams` takes in one pass: a step sorts its positions by (stream,
#: bucket) as one 16-bit key (a radix sort), so streams × BUCKETS must stay below 2**16.
MAX_STREAMS = (1 << 16) // BUCKETS


class WavePlan:
    """One image's positions of an ``h`` × ``w`` level sorted by step (raster order within a step).

    ``raster``: each position's index in raster order; ``own`` and ``parent``: its index in the
    image's padded grid ((h + 2) × (w + 2)) and its parent's in the coarser level's ((h/2 + 2) ×
    (w/2 + 2)); ``inside`` (4, positions): whether each causal neighbour lies in the position's tile
    (and the grid); ``bounds[t]:bounds[t + 1]``: step t's slice. The same for every image of the
    size, so one plan serves a whole group (see the module's *Layout*)."""

    def __init__(self, h: int, w: int, tile: int) -> None:
        self.h, self.w = h, w
        # tile ≤ 4096: t < 3 · 4096, a 16-bit key
        t = np.add.outer(2 * (np.arange(h, dtype=np.int16) % tile), np.arange(w, dtype=np.int16) % tile).ravel()
        order = np.argsort(t, kind="stable")  # a radix sort; stable keeps raster order within a step
        rows, cols = np.divmod(order, w)
        a, b = rows % tile, cols % tile
        self.raster = order
        self.own = (rows + 1) * (w + 2) + (cols + 1)
        self.parent = (rows // 2 + 1) * (w // 2 + 2) + (cols // 2 + 1)
        self.inside = np.stack([b > 0, (a > 0) & (b > 0), a > 0, (a > 0) & (b + 1 < tile) & (cols + 1 < w)])
        self.bounds = np.concatenate([[0], np.cumsum(np.bincount(t, minlength=1))]).astype(np.int64)

    @property
    def steps(self) -> int:
        return len(self.bounds) - 1

    @property
    def padded_size(self) -> int:
        return (self.h + 2) * (self.w + 2)

    @property
    def parent_size(self) -> int:
        return (self.h // 2 + 2) * (self.w // 2 + 2)

    def own_at(self, sl: slice, count: int) -> np.ndarray:
        """(count, k): the positions ``sl`` in the padded buffer of ``count`` images of this size."""
        return self.own[sl] + (self.padded_size * np.arange(count, dtype=np.int64))[:, None]

    def parent_at(self, sl: slice, count: int) -> np.ndarray:
        """(count, k): their parents in the coarser level's padded buffer."""
        return self.parent[sl] + (self.parent_size * np.arange(count, dtype=np.int64))[:, None]


#: Largest plan (positions) kept for reuse: 28 bytes a position, so at most 16 × 29 MB.
PLAN_CACHE_POSITIONS = 1 << 20


def _plan(h: int, w: int, tile: int) -> WavePlan:
    """Plans are read-only and the same for every image of a size: a photo album's few sizes are
    planned once per level (the plans of very large images are not kept)."""
    return _cached_plan(h, w, tile) if h * w <= PLAN_CACHE_POSITIONS else WavePlan(h, w, tile)


@lru_cache(maxsize=16)
def _cached_plan(h: int, w: int, tile: int) -> WavePlan:
    return WavePlan(h, w, tile)


def step_features(plan: WavePlan, count: int, parent: np.ndarray | None, own: np.ndarray, sl: slice,
                  out: np.ndarray | None = None, own_at: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(:data:`FEATURES`, count · k) integer features of the positions ``sl`` of the plan in
    each of ``count`` images (image-major): the parent's value and its neighbours up, down, left,
    right (:data:`NEIGHBOURS`; all 0 at the coarsest level, ``parent`` None), then the causal
    neighbours left, up-left, up, up-right (:data:`CAUSAL_NEIGHBOURS`; 0 outside the position's
    tile). ``parent``, ``own``: the levels' grids padded (:func:`~archiver.codecs.pyramid.net.padded`)
    and flattened, image after image, ``own`` with every
    position before ``sl``'s step already written; ``out``: where to write them (a (FEATURES,
    count · k) slice of a larger array); ``own_at``: ``plan.own_at(sl, count)`` if the caller has
    it already (the decoder writes the step's values there afterwards)."""
    k = sl.stop - sl.start
    if out is None:
        out = np.empty((FEATURES, count * k), dtype=own.dtype)
    feats = out.reshape(FEATURES, count, k)  # a view: each row of ``out`` is contiguous
    if parent is None:
        feats[:PARENT_FEATURES] = 0.0
    else:
        _gather(parent, plan.parent_at(sl, count), plan.w // 2 + 2, ((0, 0),) + NEIGHBOURS, feats[:PARENT_FEATURES])
    causal = feats[PARENT_FEATURES:]
    _gather(own, plan.own_at(sl, count) if own_at is None else own_at, plan.w + 2, CAUSAL_NEIGHBOURS, causal)
    causal *= plan.inside[:, None, sl]
    return out


def _gather(flat: np.ndarray, at: np.ndarray, width: int, offsets, out: np.ndarray) -> None:
    """``out[k] = flat[at + dy·width + dx]`` for each neighbour (dy, dx) of ``offsets`` (|dy|, |dx|
    ≤ 1; ``at`` inside a padded grid of rows ``width`` long, so every neighbour is in ``flat``).

    Read as ``flat[c + off:][at − c]`` with c = width + 1: one subtraction for all neighbours
    instead of an addition each. ``mode="clip"`` only because numpy buffers ``out`` in the default
    mode; the indices, made from the images' sizes alone, are always in range."""
    c = width + 1
    shifted = at - c
    for k, (dy, dx) in enumerate(offsets):
        flat[c + dy * width + dx :].take(shifted, out=out[k], mode="clip")


def level_residuals(coder, images: list[list[np.ndarray]]):
    """For every level of a group in coding order: (level, plan, residual, bucket), the residuals
    ``y − mean`` and buckets (n, positions) of each image's positions in plan order, computed from
    the complete grids (the encoder's view: a position's features are what the decoder has when it
    reaches it). ``images[i][level]``: (h_l, w_l) ints, all images of one size."""
    spec: PyramidSpec = coder.spec
    parent, n = None, len(images)
    for level in reversed(range(spec.levels)):
        grids = [np.asarray(g[level]) for g in images]
        plan = _plan(*grids[0].shape, spec.context_tile)
        own = padded(np.stack(grids)).ravel()
        mean, bucket = coder.net.run(0, level, step_features(plan, n, parent, own, slice(0, plan.bounds[-1])))
        values = np.stack([g.ravel() for g in grids]).astype(np.int64)[:, plan.raster]
        yield level, plan, values - mean.reshape(n, -1), bucket.reshape(n, -1)
        parent = own


def encode_group(coder, encoder, images: list[list[np.ndarray]]) -> None:
    """Code a group's grids into ``encoder`` in the wavefront order (``coder``: the
    :class:`~archiver.codecs.pyramid.coder.PyramidCoder` with the network and tables)."""
    for level, plan, residual, bucket in level_residuals(coder, images):
        for t in range(plan.steps):
            lo, hi = plan.bounds[t], plan.bounds[t + 1]
            if hi > lo:
                coder._encode_step(encoder, level, residual[:, lo:hi].ravel(), bucket[:, lo:hi].ravel())


def decode_streams(coder, streams: list[tuple[object, int, int, int]]) -> list[list[list[np.ndarray]]]:
    """Inverse of :func:`encode_group` for several groups at once: ``streams[s] = (range decoder,
    count, height, width)``, a group of ``count`` images coded at ``height`` × ``width`` pixels.
    Returns, per stream, its images' grids (level 0 first, int32); each stream decodes exactly as
    it would alone. All streams go through one pass of steps (at most :data:`MAX_STREAMS` a pass):
    in each step, every size's images form one block of positions (image-major), the blocks are
    run through the network together, and each stream's symbols are decoded from its own decoder."""
    if len(streams) > MAX_STREAMS:
        return [g for first in range(0, len(streams), MAX_STREAMS)
                for g in decode_streams(coder, streams[first : first + MAX_STREAMS])]  # fmt: skip
    sizes: dict[tuple[int, int], list[int]] = {}
    for s, (_, _, h, w) in enumerate(streams):
        sizes.setdefault((h, w), []).append(s)
    blocks = [_Block(h, w, members, [streams[s][1] for s in members]) for (h, w), members in sizes.items()]
    _decode_pass(coder, [d for d, *_ in streams], blocks)
    out: list[list[list[np.ndarray]]] = [[] for _ in streams]
    for block in blocks:
        for s, grids in zip(block.streams, block.images()):
            out[s].append(grids)
    return out


class _Block:
    """The images of one size in a decoding pass: their streams' indices, and per level their
    padded stack (features) and values, filled as the pass goes. Values are kept in plan order
    (a step writes one contiguous slice) and put in raster order once, when the level is done."""

    def __init__(self, height: int, width: int, members: list[int], counts: list[int]) -> None:
        self.height, self.width = height, width
        self.streams = np.repeat(np.asarray(members, dtype=np.int64), counts)  # each image's stream
        self.keys = self.streams * BUCKETS  # each image's first (stream, bucket) sort key
        self.n = len(self.streams)
        self.levels: dict[int, np.ndarray] = {}
        self.parent: np.ndarray | None = None
        self.own = np.zeros(0)
        self.coded = np.zeros((0, 0), dtype=np.int64)
        self.plan: WavePlan | None = None

    def start(self, level: int, tile: int) -> WavePlan:
        if self.plan is not None:
            self.levels[level + 1] = self._grids()
            self.parent = self.own
        self.plan = plan = _plan(self.height >> level, self.width >> level, tile)
        self.own = np.zeros(self.n * plan.padded_size, dtype=FEATURE_DTYPE)
        self.coded = np.empty((self.n, plan.h * plan.w), dtype=np.int64)
        return plan

    def _grids(self) -> np.ndarray:
        """The level just decoded, (n, h, w) int32 in raster order."""
        plan = self.plan
        out = np.empty((self.n, plan.h * plan.w), dtype=np.int32)  # type: ignore[union-attr]
        out[:, plan.raster] = self.coded  # type: ignore[union-attr]
        return out.reshape(self.n, plan.h, plan.w)  # type: ignore[union-attr]

    def images(self) -> list[list[np.ndarray]]:
        """Per image, its grids (level 0 first), once the pass is over."""
        self.levels[0] = self._grids()
        return [[self.levels[level][i] for level in range(len(self.levels))] for i in range(self.n)]


def _decode_pass(coder, decoders: list, blocks: list[_Block]) -> None:
    """Decode every level of ``blocks`` in lockstep (see :func:`decode_streams`): each step's
    arithmetic compiled (:func:`archiver.codecs.pyramid.native.decode_pass`) where the library was
    built, else in numpy (below); the same integers either way."""
    if native.takes(coder):
        native.decode_pass(coder, decoders, blocks)
        return
    spec: PyramidSpec = coder.spec
    calls: dict = {}  # coder.decode_runs' cache for these decoders
    for level in reversed(range(spec.levels)):
        plans = [b.start(level, spec.context_tile) for b in blocks]
        bounds = [p.bounds.tolist() for p in plans]  # Python ints: slices are made per step
        for t in range(max(p.steps for p in plans)):
            here = [(b, p, slice(bd[t], bd[t + 1])) for b, p, bd in zip(blocks, plans, bounds)
                    if t < p.steps and bd[t + 1] > bd[t]]  # fmt: skip
            if not here:
                continue
            sizes = [b.n * (sl.stop - sl.start) for b, _, sl in here]
            feats = SCRATCH.get("features", (FEATURES, sum(sizes)), FEATURE_DTYPE)
            at, first = [], 0
            for (b, p, sl), size in zip(here, sizes):
                at.append(p.own_at(sl, b.n))
                step_features(p, b.n, b.parent, b.own, sl, out=feats[:, first : first + size], own_at=at[-1])
                first += size
            mean, bucket = coder.net.run(0, level, feats)
            keys = None
            if len(decoders) > 1:
                keys = np.concatenate([np.repeat(b.keys, sl.stop - sl.start) for b, _, sl in here])
            v = coder._decode_phase(decoders, mean, bucket, keys, calls)
            clipped = _clip_feature(v)
            first = 0
            for (b, p, sl), size, own_at in zip(here, sizes, at):
                b.coded[:, sl] = v[first : first + size].reshape(b.n, -1)
                # put, not b.own[own_at] = …: 6× faster for these scattered indices (measured)
                b.own.put(own_at, clipped[first : first + size])
                first += size


def _clip_feature(v: np.ndarray) -> np.ndarray:
    """``v`` clipped to ±FEATURE_CLIP as :data:`FEATURE_DTYPE` (what the features read), one pass."""
    return np.clip(v, -FEATURE_CLIP, FEATURE_CLIP, out=np.empty(v.shape, dtype=FEATURE_DTYPE), casting="unsafe")
