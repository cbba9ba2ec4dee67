"""Context-bucketed integer entropy tables: a symbol's table is chosen by what is already decoded.

A per-channel table ignores that latents come in busy and quiet regions. Here each symbol of a
(C, h, w) integer latent is coded with one of a few tables of its channel, picked by integer
*activities* of symbols the decoder already has -- a hyperprior's main gain without any float at
decode time, so the bitstream decodes identically on every machine.

With ``a_c = |y_c - m_c|`` (``m_c``: channel c's mode), channels are coded in order 0 … C-1 and:

- the *channel activity* of a position is ``P = sum_{c' < c} a_{c'}`` at that position; it falls in
  one of ``K`` buckets by the channel's ``channel_thresholds[c]`` (K - 1 ascending integers; bucket
  = how many thresholds are ≤ P);
- with ``S >= 2`` spatial buckets, the channel's positions are split in a checkerboard: *anchors*
  (``(i + j)`` even) are coded first, in slot 0; then each other position's *spatial activity*
  ``N = floor(4 * sum(a_c over its anchor neighbours, 4-connected) / their count)`` falls in one of
  ``S`` buckets by ``spatial_thresholds[c]``, and the position is coded in slot ``1 + bucket``.
  With ``S = 1`` every position is in slot 0 (no checkerboard).

Within one channel the groups go slot by slot, bucket by bucket, and each group's symbols in raster
order. ``S = K = 1`` is exactly the per-channel model of format version 1.

Tables are stored as *quantized counts* (one byte each, :func:`quantize_counts`) and normalized to
``2**PRECISION`` by integer arithmetic (:func:`normalize_counts`), so writer and reader build the
same frequencies. :func:`fit_context_tables` counts a collection's latents for several (S, K) and
keeps the one with the fewest bytes, tables included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import zstandard

from ..errors import CorruptArchiveError
from .tables import MAX_SYMBOLS, PRECISION, FrequencyTables, TableCounter

__all__ = [
    "CANDIDATES",
    "MIN_CONTEXT_GAIN",
    "ContextTables",
    "channel_buckets",
    "spatial_activity",
    "anchor_mask",
    "quantize_counts",
    "dequantize_counts",
    "normalize_counts",
    "fit_context_tables",
]

#: (S spatial buckets, K channel buckets) that :func:`fit_context_tables` tries; (1, 1) is the plain
#: per-channel model, so the chosen one is never worse by the fit's own measure.
CANDIDATES: tuple[tuple[int, int], ...] = tuple((s, k) for s in (1, 2, 3) for k in (1, 2, 3, 4))
#: Activities are clipped to this before they are histogrammed (thresholds never need more).
ACTIVITY_CAP = 1 << 12
#: zstd level of the stored counts when a candidate's table cost is measured (the writer's level).
TABLE_ZSTD_LEVEL = 19
#: Contexts must save at least this fraction of the per-channel model's bytes to be chosen: they cost
#: decode time (on 2,000 32-px thumbnails, 2x2 latents, they saved 0.0-0.6 % and extraction ran at
#: 0.3-0.6 Mpx/s against 1.3 Mpx/s with one table per channel; on 128-px crops they save 3-5 %).
MIN_CONTEXT_GAIN = 0.01

# Quantized counts: q < 16 is the count itself; above, a float with a 3-bit mantissa,
# (8 + m) << (e + 1) for q = 16 + 8e + m: relative error below 1/8, 255 → 15 << 30.
_Q = np.arange(256, dtype=np.int64)
_DEQUANT = np.where(_Q < 16, _Q, (8 + (_Q - 16) % 8) << ((_Q - 16) // 8 + 1))


def dequantize_counts(q: np.ndarray) -> np.ndarray:
    """int64 counts of uint8 quantized counts (exact integers, see :func:`quantize_counts`)."""
    return _DEQUANT[q.astype(np.int64)]


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """uint8 codes of non-negative counts: the largest code whose count is ≤ the count (0 stays 0)."""
    counts = np.minimum(np.asarray(counts, dtype=np.int64), int(_DEQUANT[-1]))
    return (np.searchsorted(_DEQUANT, counts, side="right") - 1).astype(np.uint8)


def normalize_counts(counts: np.ndarray, length: int) -> np.ndarray:
    """uint32 frequencies of the first ``length`` symbols of each row of ``counts`` (…, L): every
    symbol ≥ 1, each row summing to ``2**PRECISION``; the remainder goes to the row's first largest
    count. Integer arithmetic only (counts are below 2**35, so products stay below 2**63)."""
    total = 1 << PRECISION
    c = counts[..., :length].astype(np.int64)
    sums = c.sum(-1, keepdims=True)
    row = 1 + (c * (total - length)) // np.maximum(sums, 1)
    top = np.argmax(c, -1)[..., None]
    np.put_along_axis(row, top, np.take_along_axis(row, top, -1) + total - row.sum(-1, keepdims=True), -1)
    out = np.zeros(counts.shape, dtype=np.uint32)
    out[..., :length] = row
    return out


def anchor_mask(h: int, w: int) -> np.ndarray:
    """Checkerboard of anchors: True where ``(i + j)`` is even."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def spatial_activity(a: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``floor(4 · Σ a[anchor neighbours] / count)`` at every position (int64; 0 where none)."""
    total, count = _neighbour_sum(np.where(anchor, a, 0).astype(np.int64)), _neighbour_sum(anchor.astype(np.int64))
    return (4 * total) // np.maximum(count, 1)


def _neighbour_sum(v: np.ndarray) -> np.ndarray:
    """Sum of the 4-connected neighbours of every position (zero outside); slicing, not np.pad (3x faster)."""
    out = np.zeros_like(v)
    out[1:] += v[:-1]
    out[:-1] += v[1:]
    out[:, 1:] += v[:, :-1]
    out[:, :-1] += v[:, 1:]
    return out


def channel_buckets(activity: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Bucket of every activity: how many thresholds are ≤ it."""
    return np.searchsorted(thresholds, activity, side="right")


@dataclass(frozen=True)
class ContextTables:
    """Integer tables for every (channel, slot, bucket) context.

    Attributes:
        offsets: int32 (C,), smallest symbol value of each channel.
        lengths: int32 (C,), alphabet size of each channel (1: constant channel, costs no bits).
        modes: int32 (C,), the value ``m_c`` activities are measured from.
        spatial_thresholds: int32 (C, S - 1).
        channel_thresholds: int32 (C, K - 1).
        freqs: uint32 (C, slots, K, L_max), frequencies of symbols ``offset .. offset + length - 1``
            (slots = 1 if S = 1 else 1 + S); each used row sums to ``2**PRECISION``.
        counts_q: uint8, same shape: the stored quantized counts the freqs come from, or None for
            tables read from a version-1 archive (stored as freqs).
    """

    offsets: np.ndarray
    lengths: np.ndarray
    modes: np.ndarray
    spatial_thresholds: np.ndarray
    channel_thresholds: np.ndarray
    freqs: np.ndarray
    counts_q: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def spatial(self) -> int:
        """S, the number of spatial buckets (1: no checkerboard)."""
        return int(self.spatial_thresholds.shape[1]) + 1

    @property
    def buckets(self) -> int:
        """K, the number of channel-activity buckets."""
        return int(self.channel_thresholds.shape[1]) + 1

    @classmethod
    def from_channel_tables(cls, tables: FrequencyTables) -> "ContextTables":
        """The per-channel model of version 1 as contexts (S = K = 1, same bitstream)."""
        empty = np.zeros((tables.channels, 0), dtype=np.int32)
        return cls(tables.offsets, tables.lengths, tables.modes().astype(np.int32), empty, empty, tables.freqs[:, None, None, :])

    @classmethod
    def from_counts(cls, offsets, lengths, modes, spatial_thresholds, channel_thresholds, counts_q) -> "ContextTables":
        """Tables rebuilt from stored quantized counts (what the reader does, and pack before coding)."""
        counts = dequantize_counts(np.asarray(counts_q))
        freqs = np.zeros(counts.shape, dtype=np.uint32)
        for c in range(counts.shape[0]):
            freqs[c] = normalize_counts(counts[c], int(lengths[c]))
        return cls(
            np.asarray(offsets, np.int32), np.asarray(lengths, np.int32), np.asarray(modes, np.int32),
            np.asarray(spatial_thresholds, np.int32), np.asarray(channel_thresholds, np.int32), freqs,
            np.asarray(counts_q, np.uint8),
        )  # fmt: skip

    def validate(self) -> None:
        """Raise :class:`CorruptArchiveError` unless the tables are well formed."""
        c = self.offsets.shape[0]
        slots = 1 if self.spatial == 1 else 1 + self.spatial
        shapes_ok = (
            self.lengths.shape == (c,) and self.modes.shape == (c,)
            and self.spatial_thresholds.ndim == 2 and self.spatial_thresholds.shape[0] == c
            and self.channel_thresholds.ndim == 2 and self.channel_thresholds.shape[0] == c
            and self.freqs.ndim == 4 and self.freqs.shape[:3] == (c, slots, self.buckets)
        )  # fmt: skip
        if not shapes_ok:
            raise CorruptArchiveError("entropy tables: inconsistent shapes")
        if (self.lengths < 1).any() or (self.lengths > self.freqs.shape[3]).any() or (self.lengths > MAX_SYMBOLS).any():
            raise CorruptArchiveError("entropy tables: alphabet length out of range")
        for k in range(c):
            rows = self.freqs[k, :, :, : self.lengths[k]].astype(np.int64)
            if (rows.sum(-1) != (1 << PRECISION)).any() or (rows == 0).any():
                raise CorruptArchiveError(f"entropy tables: channel {k} does not sum to 2**{PRECISION}")

    def probabilities(self, channel: int, slot: int, bucket: int) -> np.ndarray:
        """float64 probabilities of one context: exact dyadic values freq / 2**PRECISION."""
        row = self.freqs[channel, slot, bucket, : self.lengths[channel]].astype(np.float64)
        return row / float(1 << PRECISION)

    def marginal(self) -> FrequencyTables:
        """One table per channel (all contexts pooled): the rate model of ``append``'s latent search."""
        if self.counts_q is None:
            pooled = self.freqs.astype(np.int64).sum((1, 2))
        else:
            pooled = dequantize_counts(self.counts_q).sum((1, 2))
        freqs = np.zeros((self.channels, self.freqs.shape[3]), dtype=np.uint32)
        for c in range(self.channels):
            freqs[c] = normalize_counts(pooled[c], int(self.lengths[c]))
        return FrequencyTables(self.offsets, freqs, self.lengths)

    def groups(self, c: int, previous: np.ndarray, a_c: np.ndarray | None, anchor: np.ndarray, anchors_done: bool):
        """(slot, bucket, flat positions) of channel ``c``'s non-empty groups, in coding order.

        ``previous`` is the channel activity (h, w). Before the anchors are known (``anchors_done``
        False) only slot 0's groups are given; then, from ``a_c`` on the anchors, the others.
        Positions index the raveled (h, w) channel (raster order within a group), or are
        ``slice(None)`` for the whole channel.
        """
        k = self.buckets
        if self.spatial == 1 and k == 1:  # one table per channel: the whole channel, as in version 1
            return [] if anchors_done else [(0, 0, slice(None))]
        kb = channel_buckets(previous, self.channel_thresholds[c]).ravel()
        if self.spatial == 1:
            if anchors_done:
                return []
            positions, gid = np.arange(kb.size), kb
        elif not anchors_done:
            positions = np.flatnonzero(anchor)
            gid = kb[positions]  # slot 0
        else:
            positions = np.flatnonzero(~anchor)
            ks = channel_buckets(spatial_activity(a_c, anchor).ravel()[positions], self.spatial_thresholds[c])
            gid = (1 + ks) * k + kb[positions]
        # One stable sort instead of a mask per group: ascending gid is slot-major, bucket-minor
        # order, and a stable sort keeps raster order within each group.
        order = np.argsort(gid, kind="stable")
        counts = np.bincount(gid, minlength=1)
        ends = np.cumsum(counts)
        return [(int(g) // k, int(g) % k, positions[order[ends[g] - counts[g] : ends[g]]]) for g in np.flatnonzero(counts)]


def _quantile_thresholds(hist: np.ndarray, n: int) -> np.ndarray:
    """n - 1 thresholds splitting the histogram's mass into n near-equal buckets (int32)."""
    if n == 1:
        return np.zeros(0, dtype=np.int32)
    cdf = np.cumsum(hist)
    total = max(int(cdf[-1]), 1)
    # Bucket j - 1 takes values up to the j/n quantile; the threshold is the next value.
    return np.array([1 + int(np.searchsorted(cdf, j * total / n)) for j in range(1, n)], dtype=np.int32)


def _walk(y: np.ndarray, modes: np.ndarray):
    """Per channel c of one latent: (c, y_c, channel activity before c, spatial activity, anchors), int64."""
    y = y.astype(np.int64)
    a = np.abs(y - modes[:, None, None])
    anchor = anchor_mask(*y.shape[1:])
    prev = np.zeros(y.shape[1:], dtype=np.int64)
    for c in range(y.shape[0]):
        yield c, y[c], prev, spatial_activity(a[c], anchor), anchor
        prev = prev + a[c]  # a new array: the caller may still hold the one just yielded


def _bits(counts: np.ndarray, freqs: np.ndarray) -> float:
    used = counts > 0
    return float((counts[used] * (PRECISION - np.log2(freqs[used].astype(np.float64)))).sum())


def fit_context_tables(
    latents: Callable[[], Iterable[np.ndarray]], candidates: Iterable[tuple[int, int]] = CANDIDATES
) -> tuple[ContextTables, dict]:
    """Count a collection's integer latents and return the cheapest context tables, with a report.

    ``latents`` is called three times and must yield the same (C, h, w) integer latents each time
    (pack reads them back from its spool): marginal counts and modes, then activity histograms for
    the thresholds, then the counts of every candidate (S, K). The report gives each candidate's
    measured bytes (coded symbols + zstd'd stored counts and thresholds) and the choice: the
    cheapest, unless it saves less than :data:`MIN_CONTEXT_GAIN` against S = K = 1 (then S = K = 1).
    """
    counter = TableCounter()
    for y in latents():
        counter.add(y)
    base = counter.tables()  # offsets, lengths and the marginal counts' modes
    offsets, lengths, channels = base.offsets.astype(np.int64), base.lengths, base.channels
    modes = base.modes()
    width = int(lengths.max())
    candidates = list(candidates)
    ks_needed = sorted({k for _, k in candidates})
    ss_needed = sorted({s for s, _ in candidates})

    prev_hist = np.zeros((channels, ACTIVITY_CAP + 1), dtype=np.int64)
    spat_hist = np.zeros((channels, ACTIVITY_CAP + 1), dtype=np.int64)
    for y in latents():
        for c, _, prev, spatial, anchor in _walk(y, modes):
            prev_hist[c] += np.bincount(np.minimum(prev, ACTIVITY_CAP).ravel(), minlength=ACTIVITY_CAP + 1)
            spat_hist[c] += np.bincount(np.minimum(spatial[~anchor], ACTIVITY_CAP), minlength=ACTIVITY_CAP + 1)
    chan_thr = {k: np.stack([_quantile_thresholds(prev_hist[c], k) for c in range(channels)]) for k in ks_needed}
    spat_thr = {s: np.stack([_quantile_thresholds(spat_hist[c], s) for c in range(channels)]) for s in ss_needed}

    counts = {(s, k): np.zeros((channels, 1 if s == 1 else 1 + s, k, width), dtype=np.int64) for s, k in candidates}
    for y in latents():
        for c, y_c, prev, spatial, anchor in _walk(y, modes):
            sym = (y_c - offsets[c]).ravel()
            kbs = {k: channel_buckets(prev, chan_thr[k][c]).ravel() for k in ks_needed}
            sps = {s: channel_buckets(spatial, spat_thr[s][c]).ravel() for s in ss_needed if s > 1}
            flat_anchor = anchor.ravel()
            for (s, k), table in counts.items():
                slot = np.zeros_like(sym) if s == 1 else np.where(flat_anchor, 0, 1 + sps[s])
                index = (slot * k + kbs[k]) * width + sym
                table[c] += np.bincount(index, minlength=table[c].size).reshape(table[c].shape)

    report: dict = {"candidates": {}}
    best: tuple[float, ContextTables] | None = None
    plain: tuple[float, ContextTables] | None = None
    for (s, k), table in counts.items():
        tables = ContextTables.from_counts(
            offsets, lengths, modes, spat_thr[s], chan_thr[k], quantize_counts(table)
        )  # fmt: skip
        stored = tables.counts_q.tobytes() + tables.spatial_thresholds.tobytes() + tables.channel_thresholds.tobytes()
        table_bytes = len(zstandard.ZstdCompressor(level=TABLE_ZSTD_LEVEL).compress(stored))
        symbol_bytes = _bits(table, tables.freqs) / 8
        total = symbol_bytes + table_bytes
        report["candidates"][f"S{s}K{k}"] = {"symbol_bytes": round(symbol_bytes), "table_bytes": table_bytes}
        if best is None or total < best[0]:
            best = (total, tables)
        if (s, k) == (1, 1):
            plain = (total, tables)
    assert best is not None
    chosen = best[1]
    if plain is not None and best[0] > (1 - MIN_CONTEXT_GAIN) * plain[0]:
        chosen = plain[1]
    report["chosen"] = f"S{chosen.spatial}K{chosen.buckets}"
    return chosen, report
