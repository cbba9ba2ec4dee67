"""Range coding of one image's integer latents with context tables (constriction).

The coding order and contexts are those of :mod:`archiver.codec.context`; with one context per
channel (format version 1 archives) it is channel by channel, each in raster order.
"""

from __future__ import annotations

import numpy as np
import constriction

from ..errors import CorruptArchiveError
from .context import ContextTables, anchor_mask
from .tables import FrequencyTables

__all__ = ["LatentCoder"]


class LatentCoder:
    """Encodes and decodes (C, h, w) int32 latents; one instance caches the constriction models."""

    def __init__(self, tables: ContextTables | FrequencyTables) -> None:
        if isinstance(tables, FrequencyTables):
            tables = ContextTables.from_channel_tables(tables)
        tables.validate()
        self.tables = tables
        self._models: dict[tuple[int, int, int], object] = {}

    def _model(self, c: int, slot: int, bucket: int):
        key = (c, slot, bucket)
        if key not in self._models:
            probs = self.tables.probabilities(c, slot, bucket)
            self._models[key] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[key]

    def encode(self, latent: np.ndarray) -> bytes:
        """Bitstream (a multiple of 4 bytes, little-endian 32-bit words) for one image's latent."""
        return self.encode_many([latent])

    def encode_many(self, latents) -> bytes:
        """One bitstream for several latents coded one after the other (format version 3's image
        groups: one range-coder flush for the whole group); :meth:`decode_many` reads it back."""
        encoder = constriction.stream.queue.RangeEncoder()
        for latent in latents:
            self._encode_into(encoder, latent)
        return encoder.get_compressed().astype("<u4").tobytes()

    def _encode_into(self, encoder, latent: np.ndarray) -> None:
        t = self.tables
        if latent.ndim != 3 or latent.shape[0] != t.channels:
            raise ValueError(f"latent shape {latent.shape} does not match {t.channels} channels")
        latent = latent.astype(np.int64)
        anchor = anchor_mask(*latent.shape[1:])
        previous = np.zeros(latent.shape[1:], dtype=np.int64)
        for c in range(t.channels):
            symbols = latent[c] - int(t.offsets[c])
            if (symbols < 0).any() or (symbols >= t.lengths[c]).any():
                raise ValueError(f"latent channel {c} has values outside its table")
            a_c = np.abs(latent[c] - int(t.modes[c]))
            if t.lengths[c] > 1:
                flat = symbols.ravel().astype(np.int32)
                for done in (False, True):
                    for slot, bucket, positions in t.groups(c, previous, a_c, anchor, done):
                        encoder.encode(flat[positions], self._model(c, slot, bucket))
            previous += a_c

    def decode(self, data: bytes, height: int, width: int) -> np.ndarray:
        """Latent (C, height, width) int32 from :meth:`encode`'s bytes."""
        return self.decode_many(data, height, width, 1)[0]

    def decode_many(self, data: bytes, height: int, width: int, count: int) -> list[np.ndarray]:
        """``count`` latents (C, height, width) int32 from :meth:`encode_many`'s bytes."""
        if len(data) % 4:
            raise CorruptArchiveError(f"latent bitstream of {len(data)} bytes is not whole 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        return [self._decode_from(decoder, height, width) for _ in range(count)]

    def _decode_from(self, decoder, height: int, width: int) -> np.ndarray:
        t = self.tables
        out = np.empty((t.channels, height, width), dtype=np.int32)
        anchor = anchor_mask(height, width)
        previous = np.zeros((height, width), dtype=np.int64)
        for c in range(t.channels):
            channel = np.full((height, width), int(t.offsets[c]), dtype=np.int64)
            if t.lengths[c] > 1:
                a_c = None
                flat = channel.ravel()  # a view: writes land in channel
                for done in (False, True):
                    if done:  # the anchors are in: the others' spatial contexts can be computed
                        a_c = np.abs(channel - int(t.modes[c]))
                    for slot, bucket, positions in t.groups(c, previous, a_c, anchor, done):
                        try:
                            n = flat.size if isinstance(positions, slice) else positions.size
                            symbols = decoder.decode(self._model(c, slot, bucket), n)
                        except Exception as exc:  # constriction raises plain ValueError/RuntimeError
                            raise CorruptArchiveError(f"latent bitstream does not decode: {exc}") from None
                        flat[positions] = symbols.astype(np.int64) + int(t.offsets[c])
            out[c] = channel
            previous += np.abs(channel - int(t.modes[c]))
        return out
