"""Range coding of one image's integer latents with the per-channel tables (constriction)."""

from __future__ import annotations

import numpy as np
import constriction

from ..errors import CorruptArchiveError
from .tables import FrequencyTables

__all__ = ["LatentCoder"]


class LatentCoder:
    """Encodes and decodes (C, h, w) int32 latents; one instance caches the constriction models."""

    def __init__(self, tables: FrequencyTables) -> None:
        tables.validate()
        self.tables = tables
        self._models = [
            constriction.stream.model.Categorical(tables.probabilities(c), perfect=False)
            if tables.lengths[c] > 1
            else None
            for c in range(tables.channels)
        ]

    def encode(self, latent: np.ndarray) -> bytes:
        """Bitstream (a multiple of 4 bytes, little-endian 32-bit words) for one image's latent."""
        if latent.ndim != 3 or latent.shape[0] != self.tables.channels:
            raise ValueError(f"latent shape {latent.shape} does not match {self.tables.channels} channels")
        encoder = constriction.stream.queue.RangeEncoder()
        for c, model in enumerate(self._models):
            symbols = latent[c].ravel().astype(np.int64) - int(self.tables.offsets[c])
            if (symbols < 0).any() or (symbols >= self.tables.lengths[c]).any():
                raise ValueError(f"latent channel {c} has values outside its table")
            if model is not None:
                encoder.encode(symbols.astype(np.int32), model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        """Latent (C, height, width) int32 from :meth:`encode`'s bytes."""
        if len(data) % 4:
            raise CorruptArchiveError(f"latent bitstream of {len(data)} bytes is not whole 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        count = height * width
        out = np.empty((self.tables.channels, height, width), dtype=np.int32)
        for c, model in enumerate(self._models):
            if model is None:
                out[c] = self.tables.offsets[c]
                continue
            try:
                symbols = decoder.decode(model, count)
            except Exception as exc:  # constriction raises plain ValueError/RuntimeError on bad data
                raise CorruptArchiveError(f"latent bitstream does not decode: {exc}") from None
            out[c] = symbols.reshape(height, width) + self.tables.offsets[c]
        return out
