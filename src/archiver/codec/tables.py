"""Integer frequency tables per latent channel: the probability model the range coder uses.

The tables are counted from the collection's own quantized latents at pack time and stored as
integers, so encoder and decoder build the identical model on every machine; no float computed by a
network ever reaches the coder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorruptArchiveError

__all__ = ["PRECISION", "MAX_SYMBOLS", "FrequencyTables", "TableCounter", "build_tables"]

#: Fixed-point precision of the tables, in bits: each channel's frequencies sum to 2**PRECISION.
PRECISION = 24
#: Largest alphabet (symbols per channel) a table may have; latents beyond it are an error.
MAX_SYMBOLS = 1 << 16


@dataclass(frozen=True)
class FrequencyTables:
    """Per-channel tables.

    Attributes:
        offsets: int32 (C,), the smallest symbol value of each channel.
        freqs: uint32 (C, L_max), frequencies of symbols ``offset .. offset + length - 1``; zero-padded.
        lengths: int32 (C,), alphabet size of each channel (1 means the channel is constant and costs
            no bits).
    """

    offsets: np.ndarray
    freqs: np.ndarray
    lengths: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.offsets.shape[0])

    def validate(self) -> None:
        """Raise :class:`CorruptArchiveError` unless the tables are well formed."""
        c = self.offsets.shape[0]
        if self.freqs.ndim != 2 or self.freqs.shape[0] != c or self.lengths.shape != (c,):
            raise CorruptArchiveError("entropy tables: inconsistent shapes")
        if (self.lengths < 1).any() or (self.lengths > self.freqs.shape[1]).any():
            raise CorruptArchiveError("entropy tables: alphabet length out of range")
        for ch in range(c):
            row = self.freqs[ch, : self.lengths[ch]].astype(np.int64)
            if row.sum() != (1 << PRECISION) or (row == 0).any():
                raise CorruptArchiveError(f"entropy tables: channel {ch} does not sum to 2**{PRECISION}")

    def modes(self) -> np.ndarray:
        """int64 (C,): each channel's most frequent value (the first one on ties)."""
        return self.offsets.astype(np.int64) + np.array(
            [int(np.argmax(self.freqs[c, : self.lengths[c]])) for c in range(self.channels)], dtype=np.int64
        )

    def probabilities(self, channel: int) -> np.ndarray:
        """float64 probabilities of one channel: exact dyadic values freq / 2**PRECISION."""
        row = self.freqs[channel, : self.lengths[channel]].astype(np.float64)
        return row / float(1 << PRECISION)


class TableCounter:
    """Histograms of integer latents, one image at a time: memory is one count per symbol seen,
    not the latents themselves (a collection's latents can be far larger than RAM)."""

    def __init__(self) -> None:
        self._low: np.ndarray | None = None  # (C,) smallest value seen per channel
        self._counts: list[np.ndarray] = []  # per channel, counts of low[c] .. low[c] + len - 1

    def add(self, latent: np.ndarray) -> None:
        """Count one (C, h, w) integer latent."""
        c = latent.shape[0]
        if self._low is None:
            self._low = np.zeros(c, dtype=np.int64)
            self._counts = [np.zeros(0, dtype=np.int64) for _ in range(c)]
            self._low[:] = [int(latent[k].min()) for k in range(c)]
        if c != len(self._counts):
            raise ValueError(f"latent has {c} channels, earlier ones had {len(self._counts)}")
        for k in range(c):
            values = latent[k].ravel().astype(np.int64)
            lo, hi = int(values.min()), int(values.max())
            old_lo, counts = int(self._low[k]), self._counts[k]
            new_lo = min(lo, old_lo) if counts.size else lo
            new_hi = max(hi, old_lo + counts.size - 1) if counts.size else hi
            if new_hi - new_lo + 1 > MAX_SYMBOLS:
                raise ValueError(f"latent range of {new_hi - new_lo + 1} symbols exceeds {MAX_SYMBOLS}")
            grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
            if counts.size:
                grown[old_lo - new_lo : old_lo - new_lo + counts.size] = counts
            grown += np.bincount(values - new_lo, minlength=grown.size)
            self._low[k], self._counts[k] = new_lo, grown

    def tables(self) -> FrequencyTables:
        """The tables: every symbol between a channel's smallest and largest value gets ≥ 1."""
        if self._low is None:
            raise ValueError("no latents to build tables from")
        channels = len(self._counts)
        lengths = np.array([c.size for c in self._counts], dtype=np.int32)
        freqs = np.zeros((channels, int(lengths.max())), dtype=np.uint32)
        total = 1 << PRECISION
        for c, counts in enumerate(self._counts):
            n = int(lengths[c])
            # One guaranteed unit per symbol, the rest shared in proportion to the counts.
            row = 1 + (counts * (total - n)) // counts.sum()
            row[np.argmax(counts)] += total - int(row.sum())
            freqs[c, :n] = row
        return FrequencyTables(self._low.astype(np.int32), freqs, lengths)


def build_tables(latents: list[np.ndarray]) -> FrequencyTables:
    """Count integer latents (each (C, h, w)) into tables; every symbol in a channel's range gets ≥ 1."""
    counter = TableCounter()
    for latent in latents:
        counter.add(latent)
    return counter.tables()
