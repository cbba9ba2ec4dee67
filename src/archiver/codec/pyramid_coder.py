"""Integer entropy coding of the ``pyramid`` codec's latent grids: a fixed-point context network picks
each symbol's mean and table; the tables are counted from the collection's own residuals.

Coding order: levels from the coarsest (L-1) to full size (0); within a level, phase 0 (anchors,
``(i + j)`` even) then phase 1 (the others). For every position of a phase:

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
4. The symbol coded is the residual ``y - mean`` with table ``bucket``. Within a phase the positions
   are coded bucket by bucket (ascending), each bucket's positions in raster order.

Tables: for each bucket, the residuals' range ``[low, low + length)`` and quantized counts (one byte
each, :func:`archiver.codec.context.quantize_counts`), normalized to ``2**PRECISION`` by integer
arithmetic, exactly as the version-2 context tables. A bucket never used has length 0; a table of
length 1 codes its symbol in zero bits (nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import constriction

from ..errors import CorruptArchiveError
from .context import dequantize_counts, normalize_counts, quantize_counts
from .pyramid_plan import NEIGHBOURS, PyramidSpec, context_features_count, pack_grids, unpack_grids
from .tables import MAX_SYMBOLS, PRECISION

__all__ = [
    "FRACTION_BITS", "BUCKETS", "SCALE_LOW", "SCALE_STEP", "SYMBOL_CLIP", "FEATURE_CLIP",
    "ContextNet", "ResidualTables", "PyramidCoder", "phase_features", "anchor_mask",
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


def _padded(g: np.ndarray) -> np.ndarray:
    """``g`` clipped to ±FEATURE_CLIP, as float64, with a border of one zero on every side (so that
    a neighbour outside the grid reads 0)."""
    out = np.zeros((g.shape[0] + 2, g.shape[1] + 2), dtype=np.float64)
    np.clip(g, -FEATURE_CLIP, FEATURE_CLIP, out=out[1:-1, 1:-1], casting="unsafe")
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
        parent = _padded(grids[level + 1])  # type: ignore[arg-type]
        wp = parent.shape[1]
        at = (rows // 2 + 1) * wp + (cols // 2 + 1)  # flat indices: np.take is faster than 2-D indexing
        flat = parent.ravel()
        np.take(flat, at, out=feats[0])
        for k, (dy, dx) in enumerate(NEIGHBOURS, 1):
            np.take(flat, at + (dy * wp + dx), out=feats[k])
    if phase == 1:
        own = _padded(grids[level])  # type: ignore[arg-type]
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
        if len(self.layers) != 2:
            raise CorruptArchiveError("pyramid context network: expected two phases")
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
                for p in range(2)
            ))  # fmt: skip
        except KeyError as exc:
            raise CorruptArchiveError(f"pyramid context network: array {exc} missing") from None

    def run(self, phase: int, level: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, bucket), int64 each, for positions of ``level`` with the (F − L, n) integer features
        ``x`` (float64 holding integers; one column per position, the layout BLAS is fast at for
        millions of positions; in-place steps). The level's one-hot input is folded into the first
        bias: W·onehot is the level's column of W."""
        (w1, b1), (w2, b2), (w3, b3) = [(w.astype(np.float64), b.astype(np.float64)) for w, b in self.layers[phase]]
        f = x.shape[0]
        h = w1[:, :f] @ x
        h += (b1 + w1[:, f + level])[:, None]
        np.clip(h, 0, ACT_MAX, out=h)
        h = self._shift(w2 @ h, b2)
        np.clip(h, 0, ACT_MAX, out=h)
        o = self._shift(w3 @ h, b3)
        mean = np.clip(np.floor((o[0] + _ONE // 2) / _ONE), -SYMBOL_CLIP, SYMBOL_CLIP)
        bucket = np.clip(np.floor((o[1] - SCALE_LOW) / SCALE_STEP), 0, BUCKETS - 1)
        return mean.astype(np.int64), bucket.astype(np.int64)

    @staticmethod
    def _shift(acc: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """``floor((acc + bias · 2**8) / 2**8)`` in place (dividing by a power of two is exact)."""
        acc += (bias * _ONE)[:, None]
        acc *= 1.0 / _ONE
        return np.floor(acc, out=acc)


@dataclass(frozen=True)
class ResidualTables:
    """One table per scale bucket: ``lows`` int32 (BUCKETS,), ``lengths`` int32 (BUCKETS,), quantized
    ``counts_q`` uint8 (BUCKETS, L_max); ``freqs`` uint32 the same shape, rebuilt from them."""

    lows: np.ndarray
    lengths: np.ndarray
    counts_q: np.ndarray
    freqs: np.ndarray

    @classmethod
    def from_stored(cls, lows, lengths, counts_q) -> "ResidualTables":
        """Rebuild the frequencies (integer arithmetic) from what the archive stores; validates."""
        lows, lengths = np.asarray(lows, np.int32), np.asarray(lengths, np.int32)
        counts_q = np.asarray(counts_q, np.uint8)
        if lows.shape != (BUCKETS,) or lengths.shape != (BUCKETS,) or counts_q.ndim != 2 or counts_q.shape[0] != BUCKETS:
            raise CorruptArchiveError("pyramid tables: inconsistent shapes")
        if (lengths < 0).any() or (lengths > counts_q.shape[1]).any() or (lengths > MAX_SYMBOLS).any():
            raise CorruptArchiveError("pyramid tables: alphabet length out of range")
        if (np.abs(lows.astype(np.int64)) > 2 * SYMBOL_CLIP).any():
            raise CorruptArchiveError("pyramid tables: residual range out of bounds")
        counts = dequantize_counts(counts_q)
        freqs = np.zeros(counts.shape, dtype=np.uint32)
        for k in range(BUCKETS):
            if lengths[k] > 0:
                freqs[k] = normalize_counts(counts[k], int(lengths[k]))
        return cls(lows, lengths, counts_q, freqs)

    @classmethod
    def from_histograms(cls, hist: dict[int, np.ndarray], lows: dict[int, int]) -> "ResidualTables":
        """Tables of counted residuals: ``hist[k]`` counts residuals ``lows[k] …`` of bucket k."""
        width = max([h.size for h in hist.values()] + [1])
        counts_q = np.zeros((BUCKETS, width), dtype=np.uint8)
        low_arr, lengths = np.zeros(BUCKETS, np.int32), np.zeros(BUCKETS, np.int32)
        for k, h in hist.items():
            nz = np.flatnonzero(h)
            if nz.size == 0:
                continue
            h = h[nz[0] : nz[-1] + 1]
            # Every symbol in range gets at least quantized count 1 (normalize_counts adds 1 anyway).
            counts_q[k, : h.size] = np.maximum(quantize_counts(h), 1)
            low_arr[k], lengths[k] = lows[k] + nz[0], h.size
        return cls.from_stored(low_arr, lengths, counts_q)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"lows": self.lows, "lengths": self.lengths, "counts": self.counts_q}


class HistogramCounter:
    """Residual histograms per bucket, one image at a time (memory: the histograms only)."""

    def __init__(self) -> None:
        self.hist: dict[int, np.ndarray] = {}
        self.lows: dict[int, int] = {}

    def add(self, bucket: np.ndarray, residual: np.ndarray) -> None:
        order, runs = bucket_runs(bucket)
        ordered = residual[order]
        for k, start, stop in runs:
            r = ordered[start:stop]
            lo, hi = int(r.min()), int(r.max())
            k = int(k)
            if k in self.hist:
                old_lo, old = self.lows[k], self.hist[k]
                lo, hi = min(lo, old_lo), max(hi, old_lo + old.size - 1)
            grown = np.zeros(hi - lo + 1, np.int64)
            if k in self.hist:
                grown[self.lows[k] - lo : self.lows[k] - lo + self.hist[k].size] = self.hist[k]
            grown += np.bincount(r - lo, minlength=grown.size)
            self.hist[k], self.lows[k] = grown, lo

    def tables(self) -> ResidualTables:
        return ResidualTables.from_histograms(self.hist, self.lows)

    def ideal_bits(self, tables: ResidualTables) -> float:
        """Bits of the counted residuals coded with ``tables`` (tables made from these counts):
        Σ count · (PRECISION − log2 freq). The range coder adds a few bytes per group of images."""
        bits = 0.0
        for k, h in self.hist.items():
            n = int(tables.lengths[k])
            offset = self.lows[k] - int(tables.lows[k])
            nz = np.flatnonzero(h)
            if nz.size == 0:
                continue
            freqs = tables.freqs[k, offset + nz].astype(np.float64)
            if n == 0 or offset + nz[-1] >= n or offset + nz[0] < 0:
                raise ValueError("ideal_bits: tables were not made from these counts")
            bits += float((h[nz] * (PRECISION - np.log2(freqs))).sum())
        return bits


def _phase_positions(h: int, w: int, phase: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a phase's positions in raster order: row i holds columns ≡ i + phase (mod 2)."""
    if w % 2:
        rows, cols = np.nonzero(anchor_mask(h, w) == (phase == 0))
        return rows, cols
    first = (np.arange(h) + phase) % 2  # without the mask: every row has w / 2 of them
    return np.repeat(np.arange(h), w // 2), (first[:, None] + 2 * np.arange(w // 2)[None, :]).ravel()


def bucket_runs(bucket: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order of a phase: ``order`` (positions sorted by bucket, raster order within one)
    and ``(bucket, start, stop)`` of each used bucket's run in it, ascending.

    Buckets are below 32, so a stable sort of them as uint8 is a radix sort (linear time), and the
    runs come from their counts instead of a mask per bucket.
    """
    small = bucket.astype(np.uint8)
    order = np.argsort(small, kind="stable")
    counts = np.bincount(small, minlength=BUCKETS)
    ends = np.cumsum(counts)
    return order, [(k, int(ends[k] - counts[k]), int(ends[k])) for k in np.flatnonzero(counts)]


class PyramidCoder:
    """Encodes and decodes one image's grids (a list of (h_l, w_l) int arrays, level 0 first)."""

    def __init__(self, spec: PyramidSpec, net: ContextNet, tables: ResidualTables | None = None) -> None:
        if any(c != 1 for c in spec.channels):
            raise CorruptArchiveError("pyramid coder: only one channel per level is supported")
        net.validate(spec)
        self.spec, self.net, self.tables = spec, net, tables
        self._models: dict[int, object] = {}

    def _model(self, k: int):
        if k not in self._models:
            t = self.tables
            n = int(t.lengths[k])
            if n == 0:
                raise CorruptArchiveError(f"pyramid bitstream uses table {k}, which the archive does not have")
            self._models[k] = constriction.stream.model.Categorical(
                t.freqs[k, :n].astype(np.float64) / float(1 << PRECISION), perfect=False
            )
        return self._models[k]

    def steps(self, grids: list[np.ndarray]):
        """For every (level, phase) in coding order: (level, rows, cols, mean, bucket), computed from
        the complete ``grids`` (the encoder's view)."""
        for level in reversed(range(self.spec.levels)):
            h, w = grids[level].shape
            for phase in (0, 1):
                rows, cols = _phase_positions(h, w, phase)
                if rows.size == 0:
                    continue
                mean, bucket = self._params(grids, level, phase, rows, cols)
                yield level, rows, cols, mean, bucket

    def _params(self, grids: list[np.ndarray | None], level: int, phase: int, rows: np.ndarray, cols: np.ndarray):
        """(mean, bucket) of the positions (rows, cols) of ``level`` in ``phase`` (raster order).

        An anchor's features are its parent's five values only, and below the coarsest level every
        parent has exactly two anchor children, ``(2p, 2q)`` and ``(2p + 1, 2q + 1)`` (each level is
        an even number of positions a side; other sizes take the plain path). So phase 0 runs the
        network once per parent and gives both children its result: the same integers as one run
        per anchor (the arithmetic is exact), at half the cost. Phase 1 also reads the position's
        own neighbours and runs per position.
        """
        h, w = grids[level].shape  # type: ignore[union-attr]
        parent = grids[level + 1] if level + 1 < len(grids) else None
        if phase == 1 or parent is None or parent.shape != (h // 2, w // 2) or h % 2 or w % 2:
            return self.net.run(phase, level, phase_features(self.spec, grids, level, phase, rows, cols))
        ph, pw = parent.shape
        prow, pcol = np.divmod(np.arange(ph * pw), pw)
        mean, bucket = self.net.run(phase, level, phase_features(self.spec, grids, level, phase, 2 * prow, 2 * pcol))
        at = (rows // 2) * pw + cols // 2
        return mean[at], bucket[at]

    def count(self, grids: list[np.ndarray], counter: HistogramCounter) -> None:
        """Add the residuals of one image to ``counter``."""
        for level, rows, cols, mean, bucket in self.steps(grids):
            counter.add(bucket, grids[level][rows, cols].astype(np.int64) - mean)

    def encode(self, grids: list[np.ndarray]) -> bytes:
        """Bitstream (whole little-endian 32-bit words) of one image's grids."""
        return self.encode_many([grids])

    def encode_many(self, images) -> bytes:
        """One bitstream for several images' grids, coded one after the other (one coder flush)."""
        encoder = constriction.stream.queue.RangeEncoder()
        for grids in images:
            self._encode_into(encoder, grids)
        return encoder.get_compressed().astype("<u4").tobytes()

    def _encode_into(self, encoder, grids: list[np.ndarray]) -> None:
        t = self.tables
        for level, rows, cols, mean, bucket in self.steps(grids):
            residual = grids[level][rows, cols].astype(np.int64) - mean
            order, runs = bucket_runs(bucket)
            r = residual[order]
            for k, start, stop in runs:
                sel = r[start:stop] - int(t.lows[k])
                if (sel < 0).any() or (sel >= t.lengths[k]).any():
                    raise ValueError(f"level {level}: residual outside table {int(k)}")
                if t.lengths[k] > 1:  # a one-symbol table costs no bits
                    encoder.encode(sel.astype(np.int32), self._model(int(k)))

    def decode(self, data: bytes, height: int, width: int) -> list[np.ndarray]:
        """Grids of an image coded at ``height`` × ``width`` pixels (multiples of the spec's stride)."""
        return self.decode_many(data, height, width, 1)[0]

    def decode_many(self, data: bytes, height: int, width: int, count: int) -> list[list[np.ndarray]]:
        """``count`` images' grids from :meth:`encode_many`'s bytes (all of one size)."""
        if len(data) % 4:
            raise CorruptArchiveError(f"pyramid bitstream of {len(data)} bytes is not whole 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        return [self._decode_from(decoder, height, width) for _ in range(count)]

    def _decode_from(self, decoder, height: int, width: int) -> list[np.ndarray]:
        grids: list[np.ndarray | None] = [None] * self.spec.levels
        for level in reversed(range(self.spec.levels)):
            h, w = height >> level, width >> level
            grid = np.zeros((h, w), dtype=np.int64)
            grids[level] = grid
            for phase in (0, 1):
                rows, cols = _phase_positions(h, w, phase)
                if rows.size:
                    mean, bucket = self._params(grids, level, phase, rows, cols)
                    grid[rows, cols] = self._decode_phase(decoder, mean, bucket)
        return [g.astype(np.int32) for g in grids]  # type: ignore[union-attr]

    def _decode_phase(self, decoder, mean: np.ndarray, bucket: np.ndarray) -> np.ndarray:
        """Values of one phase's positions: bucket by bucket, each in raster order."""
        order, runs = bucket_runs(bucket)
        values = np.empty(bucket.size, dtype=np.int64)
        for k, start, stop in runs:
            idx = order[start:stop]
            try:
                if self.tables.lengths[k] == 1:  # a one-symbol table costs no bits
                    sym = np.zeros(idx.size, dtype=np.int64)
                else:
                    sym = decoder.decode(self._model(int(k)), idx.size)
            except CorruptArchiveError:
                raise
            except Exception as exc:  # constriction raises plain ValueError/RuntimeError
                raise CorruptArchiveError(f"pyramid bitstream does not decode: {exc}") from None
            values[idx] = sym.astype(np.int64) + int(self.tables.lows[k]) + mean[idx]
        return values


class PackedPyramidCoder:
    """:class:`PyramidCoder` on packed latents (:func:`~archiver.codec.pyramid_plan.pack_grids`), the
    interface every codec's coder has: ``encode(latent) -> bytes``, ``decode(bytes, h, w) -> latent``
    with (h, w) the coarsest grid's positions."""

    def __init__(self, spec: PyramidSpec, net: ContextNet, tables: ResidualTables | None = None) -> None:
        self.spec = spec
        self.inner = PyramidCoder(spec, net, tables)

    @classmethod
    def from_arrays(cls, spec: PyramidSpec, arrays: dict[str, np.ndarray]) -> "PackedPyramidCoder":
        """The coder stored in an archive's ``/model/entropy`` (``context.*`` and ``tables.*`` arrays)."""
        net = ContextNet.from_arrays({k[len("context."):]: v for k, v in arrays.items() if k.startswith("context.")})
        try:
            tables = ResidualTables.from_stored(arrays["tables.lows"], arrays["tables.lengths"], arrays["tables.counts"])
        except KeyError as exc:
            raise CorruptArchiveError(f"pyramid tables: array {exc} missing") from None
        return cls(spec, net, tables)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for ``/model/entropy``."""
        out = {f"context.{k}": v for k, v in self.inner.net.to_arrays().items()}
        out.update({f"tables.{k}": v for k, v in self.inner.tables.to_arrays().items()})  # type: ignore[union-attr]
        return out

    def with_tables(self, tables: ResidualTables) -> "PackedPyramidCoder":
        return PackedPyramidCoder(self.spec, self.inner.net, tables)

    def grids(self, latent: np.ndarray) -> list[np.ndarray]:
        return [g[0] for g in unpack_grids(self.spec, latent)]

    def count(self, latent: np.ndarray, counter: HistogramCounter) -> None:
        self.inner.count(self.grids(latent), counter)

    def encode(self, latent: np.ndarray) -> bytes:
        return self.inner.encode(self.grids(latent))

    def encode_many(self, latents) -> bytes:
        return self.inner.encode_many(self.grids(latent) for latent in latents)

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        return self.decode_many(data, height, width, 1)[0]

    def decode_many(self, data: bytes, height: int, width: int, count: int) -> list[np.ndarray]:
        """``count`` packed latents (packed_channels, height, width) int32 of one stream."""
        s = self.spec.stride
        return [
            pack_grids(self.spec, [g[None] for g in grids]).astype(np.int32)
            for grids in self.inner.decode_many(data, height * s, width * s, count)
        ]
