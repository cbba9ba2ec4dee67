"""The ``pyramid`` codec's fixed-point context network: from the integers already decoded around a
latent, its mean and its table (scale bucket), in integer arithmetic that every machine computes
alike. The entropy coder (:mod:`archiver.codecs.pyramid.coder`) calls it once per phase of a level.

1. Features (integers, in this order): the parent's value (level l+1 at ``(i // 2, j // 2)``) and its
   four neighbours up, down, left, right (0 outside the grid; all five 0 at the coarsest level);
   in phase 1 the position's four neighbours up, down, left, right of its own level (all anchors,
   already decoded; 0 outside); then a one-hot of the level (L values). Every latent value enters
   clipped to ``[-FEATURE_CLIP, FEATURE_CLIP]``.
2. The phase's network, integer arithmetic (all values are integers; every product and sum stays
   below 2**53, so float64 BLAS computes them exactly, in any order, on every machine)::

       h1 = clip(W1 · x + B1, 0, ACT_MAX)                 # 8 fractional bits
       h2 = clip(floor((W2 · h1 + B2 · 2**8) / 2**8), 0, ACT_MAX)
       o  = floor((W3 · h2 + B3 · 2**8) / 2**8)           # o[0]: mean, o[1]: ln scale, 8 fractional bits

   Wk, Bk are the stored int32 weights (the float weights times 2**8, rounded).
3. ``mean = clip(floor((o[0] + 128) / 256), -SYMBOL_CLIP, SYMBOL_CLIP)``;
   ``bucket = clip(floor((o[1] - SCALE_LOW) / SCALE_STEP), 0, BUCKETS - 1)``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...errors import CorruptArchiveError
from .plan import NEIGHBOURS, PyramidSpec, context_features_count

__all__ = [
    "FRACTION_BITS", "ACT_MAX", "WEIGHT_MAX", "BUCKETS", "SCALE_LOW", "SCALE_STEP", "SYMBOL_CLIP", "FEATURE_CLIP",
    "ContextNet", "phase_features", "anchor_mask",
]  # fmt: skip

#: Fractional bits of the context network's weights and activations.
FRACTION_BITS = 8
_ONE = 1 << FRACTION_BITS
#: Activations are clipped to this (2**24 - 1): with |W| < 2**20 and at most 64 inputs every sum
#: stays below 2**50, inside float64's exact integers.
ACT_MAX = (1 << 24) - 1
#: Largest weight magnitude (fixed point): the float weight 4096.
WEIGHT_MAX = (1 << 20) - 1
#: Number of scale buckets (tables); bucket k holds ln(scale) in [SCALE_LOW + k·SCALE_STEP, …) in
#: fixed point with 8 fractional bits: ln scale from −3 (scale 0.05: a near-certain symbol) in steps of
#: 0.25 up to 5 (scale 148), beyond which every bucket is the last one.
BUCKETS = 32
SCALE_LOW = -3 * _ONE
SCALE_STEP = _ONE // 4
#: Latent values are clipped to ±SYMBOL_CLIP before coding (pack) and means to the same range.
SYMBOL_CLIP = 4095
#: Latent values enter the features clipped to ±FEATURE_CLIP.
FEATURE_CLIP = 1023


def anchor_mask(h: int, w: int) -> np.ndarray:
    """Checkerboard of anchors: True where ``(i + j)`` is even."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def padded(g: np.ndarray) -> np.ndarray:
    """``g`` (a grid (h, w), or a stack of them (..., h, w)) clipped to ±FEATURE_CLIP, as float64,
    with a border of one zero on every side of the last two axes (so that a neighbour outside the
    grid reads 0)."""
    out = np.zeros(g.shape[:-2] + (g.shape[-2] + 2, g.shape[-1] + 2), dtype=np.float64)
    np.clip(g, -FEATURE_CLIP, FEATURE_CLIP, out=out[..., 1:-1, 1:-1], casting="unsafe")
    return out


def phase_features(spec: PyramidSpec, grids: list[np.ndarray | None], level: int, phase: int,
                   rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # fmt: skip
    """(F, n) float64 integer features of the positions (rows, cols) of ``level`` in ``phase``, without
    the level's one-hot (:meth:`ContextNet.run` adds its column to the bias: the same integers).

    ``grids[level + 1]`` must be complete; in phase 1 ``grids[level]``'s anchors must be decoded.
    Gathered from one zero-bordered copy of each grid (no shifted copies: decoding speed).
    """
    feats = np.zeros((5 + (4 if phase == 1 else 0), rows.size), dtype=np.float64)
    if level + 1 < len(grids):
        parent = padded(grids[level + 1])  # type: ignore[arg-type]
        wp = parent.shape[1]
        at = (rows // 2 + 1) * wp + (cols // 2 + 1)  # flat indices: np.take is faster than 2-D indexing
        flat = parent.ravel()
        np.take(flat, at, out=feats[0])
        for k, (dy, dx) in enumerate(NEIGHBOURS, 1):
            np.take(flat, at + (dy * wp + dx), out=feats[k])
    if phase == 1:
        own = padded(grids[level])  # type: ignore[arg-type]
        wo = own.shape[1]
        at = (rows + 1) * wo + (cols + 1)
        flat = own.ravel()
        for k, (dy, dx) in enumerate(NEIGHBOURS, 5):
            np.take(flat, at + (dy * wo + dx), out=feats[k])
    return feats


@dataclass(frozen=True)
class ContextNet:
    """Fixed-point weights of the two phase networks: ``layers[phase] = [(W1, B1), (W2, B2), (W3, B3)]``,
    each W (out, in) and B (out,) int32 in units of 2**-8."""

    layers: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]

    @classmethod
    def from_float(cls, phases: list[list[tuple[np.ndarray, np.ndarray]]]) -> "ContextNet":
        """Round float (weight, bias) pairs to fixed point."""
        def q(a):
            return np.clip(np.round(np.asarray(a, np.float64) * _ONE), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int32)

        return cls(tuple(tuple((q(w), q(b)) for w, b in layers) for layers in phases))

    def validate(self, spec: PyramidSpec) -> None:
        """Raise :class:`CorruptArchiveError` unless shapes and magnitudes are what ``spec`` needs."""
        if len(self.layers) != spec.phases:
            raise CorruptArchiveError(f"pyramid context network: expected {spec.phases} phase(s), found {len(self.layers)}")
        for phase, layers in enumerate(self.layers):
            cin = context_features_count(spec, phase)
            widths = [spec.context_hidden, spec.context_hidden, 2]
            if len(layers) != 3:
                raise CorruptArchiveError("pyramid context network: expected three layers per phase")
            for (w, b), cout in zip(layers, widths):
                if w.shape != (cout, cin) or b.shape != (cout,):
                    raise CorruptArchiveError(f"pyramid context network: layer shape {w.shape}, expected {(cout, cin)}")
                if np.abs(w).max(initial=0) > WEIGHT_MAX or np.abs(b).max(initial=0) > WEIGHT_MAX:
                    raise CorruptArchiveError("pyramid context network: weight out of range")
                cin = cout

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named int32 arrays for the container (``p<phase>.l<layer>.w`` / ``.b``)."""
        out = {}
        for p, layers in enumerate(self.layers):
            for k, (w, b) in enumerate(layers):
                out[f"p{p}.l{k}.w"], out[f"p{p}.l{k}.b"] = w.astype(np.int32), b.astype(np.int32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ContextNet":
        """Inverse of :meth:`to_arrays` (missing arrays are a :class:`CorruptArchiveError`)."""
        try:
            return cls(tuple(
                tuple((np.asarray(arrays[f"p{p}.l{k}.w"], np.int32), np.asarray(arrays[f"p{p}.l{k}.b"], np.int32))
                      for k in range(3))
                for p in range(2 if "p1.l0.w" in arrays else 1)
            ))  # fmt: skip
        except KeyError as exc:
            raise CorruptArchiveError(f"pyramid context network: array {exc} missing") from None

    def run(self, phase: int, level: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, bucket), int64 each, for positions of ``level`` with the (F − L, n) integer features
        ``x`` (integers, as float64 or any integer type; one column per position, the layout BLAS is
        fast at for millions of positions).

        Computed as the module's arithmetic says, in float64 with every value exact: each layer's
        input gets a last row of ones so that the bias is a column of the matrix (the level's
        one-hot input is folded into the first bias: W·onehot is the level's column of W), and the
        weights of layers 2 and 3 are pre-divided by 2**8. Then every product and partial sum is
        a multiple of 2**-8 below 2**43, inside float64's 53 bits, in any order of summation, and
        ``floor(W/2**8 · h + B)`` equals ``floor((W·h + B·2**8) / 2**8)``. Work arrays are reused
        (:data:`SCRATCH`), :data:`RUN_COLUMNS` positions at a time."""
        f, n = x.shape
        key = (phase, f)
        if key not in self._float:
            self._float[key] = self._float_weights(phase, f)
        mean, bucket = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        for start in range(0, n, RUN_COLUMNS):
            stop = min(start + RUN_COLUMNS, n)
            self._run_block(self._float[key], level, x[:, start:stop], mean[start:stop], bucket[start:stop])
        return mean, bucket

    @staticmethod
    def _run_block(weights: tuple, level: int, x: np.ndarray, mean: np.ndarray, bucket: np.ndarray) -> None:
        """:meth:`run` on at most :data:`RUN_COLUMNS` positions, into ``mean`` and ``bucket``."""
        firsts, w2, w3 = weights
        n = x.shape[1]
        xs = _with_ones(SCRATCH.get("x", (x.shape[0] + 1, n)), x)
        h1 = SCRATCH.get("h1", (w2.shape[1], n))
        np.matmul(firsts[level], xs, out=h1[:-1])
        np.clip(h1[:-1], 0, ACT_MAX, out=h1[:-1])
        h1[-1] = 1.0
        h2 = SCRATCH.get("h2", (w3.shape[1], n))
        np.floor(np.matmul(w2, h1, out=h2[:-1]), out=h2[:-1])
        np.clip(h2[:-1], 0, ACT_MAX, out=h2[:-1])
        h2[-1] = 1.0
        o = SCRATCH.get("o", (2, n))
        np.floor(np.matmul(w3, h2, out=o), out=o)
        np.clip(np.floor((o[0] + _ONE // 2) * (1.0 / _ONE)), -SYMBOL_CLIP, SYMBOL_CLIP, out=mean, casting="unsafe")
        np.clip(np.floor((o[1] - SCALE_LOW) * (1.0 / SCALE_STEP)), 0, BUCKETS - 1, out=bucket, casting="unsafe")

    @cached_property
    def _float(self) -> dict[tuple[int, int], tuple]:
        """(phase, features) → :meth:`_float_weights`, made on first use."""
        return {}

    def _float_weights(self, phase: int, f: int) -> tuple:
        """A phase's weights as float64 (exact), converted once, not per wavefront step: per level
        l, ``[W1[:, :f] | B1 + W1[:, f + l]]`` (the one-hot's column folded into the bias), then
        ``[W2 / 2**8 | B2]`` and ``[W3 / 2**8 | B3]`` (see :meth:`run`)."""
        (w1, b1), (w2, b2), (w3, b3) = (tuple(a.astype(np.float64) for a in layer) for layer in self.layers[phase])
        firsts = [np.ascontiguousarray(np.column_stack([w1[:, :f], b1 + w1[:, f + level]]))
                  for level in range(w1.shape[1] - f)]  # fmt: skip
        return (firsts, np.column_stack([w2 * (1.0 / _ONE), b2]), np.column_stack([w3 * (1.0 / _ONE), b3]))


def _with_ones(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``out`` (F + 1, n) = ``x`` (F, n) over a row of ones."""
    out[:-1] = x
    out[-1] = 1.0
    return out


class Scratch(threading.local):
    """Reusable work arrays, one set per thread. The wavefront decoder runs the same
    computation some 900 times per photo on arrays of a few MB: fresh arrays of that size come from
    the kernel zeroed, page by page, which made the context network 2.3× slower (1.4 against 3.3 ms
    for 24,500 positions, measured)."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """A contiguous array of ``shape`` and ``dtype`` (contents undefined), valid until the
        next ``get`` of ``name`` on this thread; larger than :data:`SCRATCH_VALUES`, a new array."""
        size = math.prod(shape)  # not np.prod: 3 µs a call, 6 % of an album's entropy decoding (py-spy)
        if size > SCRATCH_VALUES:
            return np.empty(shape, dtype=dtype)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            grown = min(max(size, 2 * (0 if buf is None else buf.size)), SCRATCH_VALUES)
            buf = self.buffers[name] = np.empty(grown, dtype=dtype)
        return buf[:size].reshape(shape)


#: Positions the context network runs on at once, so that its work arrays (13 rows of float64,
#: 0.85 MB each) stay in a core's cache between the layers. Entropy decoding of a 48-photo album
#: (about 25 k positions a step, one BLAS thread as in extraction, alternating runs): 6.4–6.8 s at
#: 8192 against 7.7–9.0 s unblocked. With numpy's default BLAS threads, 4096 and 16384 were within
#: the noise of 8192 and 1024 was slower.
RUN_COLUMNS = 8192
#: Largest work array kept for reuse, in values (8 MB of float64): the network's arrays are at most
#: 13 × RUN_COLUMNS, a wavefront step's features of 48 photos about 9 × 25 k; a step larger than
#: this (very large images) gets a new array.
SCRATCH_VALUES = 1 << 20


#: The work arrays of :meth:`ContextNet.run` and of the wavefront decoder's features.
SCRATCH = Scratch()

