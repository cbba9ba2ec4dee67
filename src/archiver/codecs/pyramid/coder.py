"""Integer entropy coding of the ``pyramid`` codec's latent grids: the fixed-point context network
(:mod:`archiver.codecs.pyramid.net`) gives each symbol its mean and table; the tables are counted from
the collection's own residuals.

Coding order: levels from the coarsest (L-1) to full size (0); within a level, phase 0 (anchors,
``(i + j)`` even) then phase 1 (the others). For every position of a phase the network turns the
integers already decoded around it into a mean and a bucket (:mod:`archiver.codecs.pyramid.net`,
steps 1–3); the symbol coded is the residual ``y - mean`` with table ``bucket``. Within a phase the
positions are coded bucket by bucket (ascending), each bucket's positions in raster order. That is
the ``checkerboard`` context order (pyramid codec versions 1–3); a spec with the ``wavefront`` order
(version 4) codes a group's images together in the order of :mod:`archiver.codecs.pyramid.wave`.

Tables: for each bucket, the residuals' range ``[low, low + length)`` and quantized counts (one byte
each, :func:`archiver.codec.context.quantize_counts`), normalized to ``2**PRECISION`` by integer
arithmetic, exactly as the version-2 context tables. A bucket never used has length 0; a table of
length 1 codes its symbol in zero bits (nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import constriction

from ...errors import CorruptArchiveError
from ...codec.context import dequantize_counts, normalize_counts, quantize_counts
from .net import (
    BUCKETS, FEATURE_CLIP, FRACTION_BITS, SCALE_LOW, SCALE_STEP, SYMBOL_CLIP, ContextNet, anchor_mask, phase_features,
)  # fmt: skip
from .plan import PyramidSpec, pack_grids, unpack_grids
from .wave import decode_streams, encode_group, level_residuals
from ...codec.tables import MAX_SYMBOLS, PRECISION

# The network's names stay importable from here (the coder's public surface since format version 3).
__all__ = [
    "FRACTION_BITS", "BUCKETS", "SCALE_LOW", "SCALE_STEP", "SYMBOL_CLIP", "FEATURE_CLIP",
    "ContextNet", "ResidualTables", "HistogramCounter", "PyramidCoder", "PackedPyramidCoder", "phase_features",
    "anchor_mask", "bucket_runs",
]  # fmt: skip


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


def bucket_runs(bucket: np.ndarray, keys: int = BUCKETS) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The coding order of a phase: ``order`` (positions sorted by bucket, raster order within one)
    and ``(bucket, start, stop)`` of each used bucket's run in it, ascending. ``bucket`` may be any
    key below ``keys`` (at most 2**16): the multi-stream decoder sorts by stream · BUCKETS + bucket.

    The keys are small, so a stable sort of them as uint8 (or uint16) is a radix sort (linear
    time), and the runs come from their counts instead of a mask per bucket.
    """
    small = bucket.astype(np.uint8 if keys <= 1 << 8 else np.uint16)
    order = np.argsort(small, kind="stable")
    counts = np.bincount(small, minlength=keys)
    ends = np.cumsum(counts)
    used = np.flatnonzero(counts)
    # tolist() rather than int() per run: the wavefront decoder makes some 400 runs a step
    return order, list(zip(used.tolist(), (ends[used] - counts[used]).tolist(), ends[used].tolist()))


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
        if self.spec.context == "wavefront":
            for _level, _plan, residual, bucket in level_residuals(self, [grids]):
                counter.add(bucket.ravel(), residual.ravel())
            return
        for level, rows, cols, mean, bucket in self.steps(grids):
            counter.add(bucket, grids[level][rows, cols].astype(np.int64) - mean)

    def encode(self, grids: list[np.ndarray]) -> bytes:
        """Bitstream (whole little-endian 32-bit words) of one image's grids."""
        return self.encode_many([grids])

    def encode_many(self, images) -> bytes:
        """One bitstream for several images' grids (one coder flush): one after the other in the
        checkerboard order, interleaved step by step in the wavefront order."""
        encoder = constriction.stream.queue.RangeEncoder()
        if self.spec.context == "wavefront":
            group = list(images)
            if group:
                encode_group(self, encoder, group)
            return encoder.get_compressed().astype("<u4").tobytes()
        for grids in images:
            self._encode_into(encoder, grids)
        return encoder.get_compressed().astype("<u4").tobytes()

    def _encode_into(self, encoder, grids: list[np.ndarray]) -> None:
        for level, rows, cols, mean, bucket in self.steps(grids):
            self._encode_step(encoder, level, grids[level][rows, cols].astype(np.int64) - mean, bucket)

    def _encode_step(self, encoder, level: int, residual: np.ndarray, bucket: np.ndarray) -> None:
        """Code the residuals of one phase (or wavefront step): bucket by bucket, each in the order given."""
        t = self.tables
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
        return self.decode_streams([(data, height, width, count)])[0]

    def decode_streams(self, streams: list[tuple[bytes, int, int, int]]) -> list[list[list[np.ndarray]]]:
        """Several bitstreams of :meth:`encode_many`, ``(bytes, height, width, count)`` each: per
        stream, its images' grids. The wavefront order decodes them side by side
        (:func:`~archiver.codecs.pyramid.wave.decode_streams`), the checkerboard one after the other;
        either way every stream decodes exactly as it would alone."""
        decoders = []
        for data, *_ in streams:
            if len(data) % 4:
                raise CorruptArchiveError(f"pyramid bitstream of {len(data)} bytes is not whole 32-bit words")
            decoders.append(constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32)))
        if self.spec.context == "wavefront":
            return decode_streams(self, [(d, count, h, w) for d, (_, h, w, count) in zip(decoders, streams)])
        return [[self._decode_from(d, h, w) for _ in range(count)] for d, (_, h, w, count) in zip(decoders, streams)]

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
                    grid[rows, cols] = self._decode_phase([decoder], mean, bucket)
        return [g.astype(np.int32) for g in grids]  # type: ignore[union-attr]

    def _decode_phase(self, decoders: list, mean: np.ndarray, bucket: np.ndarray,
                      stream_keys: np.ndarray | None = None, calls: dict | None = None) -> np.ndarray:  # fmt: skip
        """Values of one phase's (or wavefront step's) positions: bucket by bucket, each in raster
        order, from ``decoders[0]``; with ``stream_keys`` (each position's stream · BUCKETS), every
        stream's positions that way from its own decoder. The symbols of every run are decoded
        into one array in coding order, then put in place and offset by ``mean + low`` at once.
        ``calls``: :meth:`decode_runs`' cache, kept by a caller that decodes many steps."""
        if stream_keys is None:
            order, runs = bucket_runs(bucket)
        else:
            order, runs = bucket_runs(stream_keys + bucket, len(decoders) * BUCKETS)
        symbols = self.decode_runs(decoders, runs, np.empty(bucket.size, dtype=np.int32), {} if calls is None else calls)
        values = self._lows.take(bucket)
        values += mean
        residual = np.empty(bucket.size, dtype=np.int32)
        residual.put(order, symbols)
        values += residual
        return values

    def decode_runs(self, decoders: list, runs, out: np.ndarray, calls: dict) -> np.ndarray:
        """The symbols of ``runs`` (``(key, start, stop)``, key = stream · BUCKETS + bucket, in
        coding order) into ``out[start:stop]`` (int32): each from its stream's decoder with its
        bucket's table; a one-symbol table's runs are 0 (no bits). Returns ``out``.

        ``calls``: a dict the caller keeps for these ``decoders`` (one pass), filled here with each
        key's ``(decoder.decode, model)`` as keys appear (a table the archive lacks is an error
        only when a run uses it); not shared between threads."""
        try:
            for key, start, stop in runs:
                call = calls.get(key)
                if call is None:
                    s, k = divmod(key, BUCKETS)
                    call = calls[key] = (decoders[s].decode, None if self._lengths[k] == 1 else self._model(k))
                if call[1] is None:
                    out[start:stop] = 0
                else:
                    out[start:stop] = call[0](call[1], stop - start)
        except CorruptArchiveError:
            raise
        except Exception as exc:  # constriction raises plain ValueError/RuntimeError
            raise CorruptArchiveError(f"pyramid bitstream does not decode: {exc}") from None
        return out

    @cached_property
    def _lengths(self) -> list[int]:
        """The tables' lengths as Python ints (compared once per run of a step)."""
        return self.tables.lengths.tolist()  # type: ignore[union-attr]

    @cached_property
    def _lows(self) -> np.ndarray:
        """The tables' lows as int64 (indexed by bucket), converted once."""
        return self.tables.lows.astype(np.int64)  # type: ignore[union-attr]


class PackedPyramidCoder:
    """:class:`PyramidCoder` on packed latents (:func:`~archiver.codecs.pyramid.plan.pack_grids`), the
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
        return self.decode_streams([(data, height, width, count)])[0]

    def decode_streams(self, streams: list[tuple[bytes, int, int, int]]) -> list[list[np.ndarray]]:
        """Several streams, ``(bytes, height, width, count)`` each, decoded in one pass
        (:meth:`PyramidCoder.decode_streams`): per stream, its packed latents."""
        s = self.spec.stride
        decoded = self.inner.decode_streams([(data, h * s, w * s, count) for data, h, w, count in streams])
        return [[pack_grids(self.spec, [g[None] for g in grids]).astype(np.int32) for grids in group] for group in decoded]
