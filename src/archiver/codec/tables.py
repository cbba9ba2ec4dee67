"""Integer frequency tables per latent channel: the probability model the range coder uses.

The tables are counted from the collection's own quantized latents at pack time and stored as
integers, so encoder and decoder build the identical model on every machine; no float computed by a
network ever reaches the coder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorruptArchiveError

__all__ = ["PRECISION", "MAX_SYMBOLS", "FrequencyTables", "build_tables"]

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

    def probabilities(self, channel: int) -> np.ndarray:
        """float64 probabilities of one channel: exact dyadic values freq / 2**PRECISION."""
        row = self.freqs[channel, : self.lengths[channel]].astype(np.float64)
        return row / float(1 << PRECISION)


def build_tables(latents: list[np.ndarray]) -> FrequencyTables:
    """Count integer latents (each (C, h, w)) into tables; every symbol in a channel's range gets ≥ 1."""
    if not latents:
        raise ValueError("no latents to build tables from")
    channels = latents[0].shape[0]
    flat = [np.concatenate([y[c].ravel() for y in latents]).astype(np.int64) for c in range(channels)]
    offsets = np.array([int(v.min()) for v in flat], dtype=np.int32)
    lengths = np.array([int(v.max()) - int(o) + 1 for v, o in zip(flat, offsets)], dtype=np.int32)
    if lengths.max() > MAX_SYMBOLS:
        raise ValueError(f"latent range of {lengths.max()} symbols exceeds {MAX_SYMBOLS}")
    freqs = np.zeros((channels, int(lengths.max())), dtype=np.uint32)
    total = 1 << PRECISION
    for c, values in enumerate(flat):
        counts = np.bincount(values - offsets[c], minlength=lengths[c]).astype(np.int64)
        n = int(lengths[c])
        # One guaranteed unit per symbol, the rest shared in proportion to the counts.
        row = 1 + (counts * (total - n)) // counts.sum()
        row[np.argmax(counts)] += total - int(row.sum())
        freqs[c, :n] = row
    return FrequencyTables(offsets, freqs, lengths)
