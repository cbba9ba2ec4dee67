"""Turning one image entry of an open archive back into a Pillow image."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from .codec.entropy import LatentCoder
from .codec.geometry import latent_grid
from .runtime.session import TILE
from .config import ModelConfig
from .container.entries import Entry
from .container.reader import ArchiveReader
from .container.records import ImageRecord, decode_image_record
from .collection.images import restore_image
from .errors import ArchiverError, CorruptArchiveError, MissingDependencyError

__all__ = ["ArchiveDecoder", "BATCH_PIXELS"]

#: Default cap on the coded pixels decoded in one runtime call (bounds memory: the widest decoder
#: activation is 16 float32 channels at full resolution, 64 bytes a pixel, so 4 Mpx ≈ 256 MiB).
BATCH_PIXELS = 4_000_000


class ArchiveDecoder:
    """Decodes image entries through ONNX Runtime (no torch); network and coder are built on first use."""

    def __init__(self, reader: ArchiveReader, provider: str = "auto", threads: int | None = None) -> None:
        self.reader = reader
        self.provider = provider
        self.threads = threads
        self._coder: LatentCoder | None = None
        self._decoder = None
        self._denoiser = None
        self._model_cfg = ModelConfig.from_dict(reader.config.get("model", {}))
        self._min_size = reader.min_size

    def _ensure(self) -> None:
        if self._decoder is not None:
            return
        try:
            from .runtime.graph import attach_weights
            from .runtime.session import OnnxDecoder
        except ImportError as exc:
            raise MissingDependencyError(f"decoding images needs onnx and onnxruntime ({exc})") from None
        self._coder = LatentCoder(self.reader.tables())
        model = attach_weights(self.reader.onnx_graph(), self.reader.model_arrays())
        self._decoder = OnnxDecoder(model, self.provider, self.threads)
        if self.reader.has_denoiser:
            from .runtime.session import OnnxDenoiser

            graph = attach_weights(self.reader.onnx_graph("denoiser_onnx"), self.reader.model_arrays("denoiser"))
            self._denoiser = OnnxDenoiser(graph, self.provider, self.threads)

    def _grid(self, entry: Entry) -> tuple[int, int]:
        return latent_grid(entry.height, entry.width, self._min_size, self._model_cfg.stride)

    def _prepare(self, chunk: list[Entry]) -> tuple[list[ImageRecord], np.ndarray]:
        records = [decode_image_record(self.reader.read_record(e)) for e in chunk]
        h, w = self._grid(chunk[0])
        latents = np.stack([self._coder.decode(r.latent, h, w) for r in records])  # type: ignore[union-attr]
        return records, latents

    def images(
        self,
        entries: list[Entry],
        batch_size: int = 8,
        batch_pixels: int = BATCH_PIXELS,
        on_error: Callable[[Entry, ArchiverError], None] | None = None,
    ) -> Iterator[tuple[Entry, Image.Image, ImageRecord]]:
        """Decode many image entries: bucketed by latent shape so a batch is one runtime call, with the
        entropy decoding of the next batch overlapping the network run of this one.

        A batch holds at most ``batch_size`` images and ``batch_pixels`` coded pixels (one image at
        least). Yields (entry, restored image, record) in bucket order. With ``on_error``, a damaged
        entry is reported to it and skipped instead of raising; the others are still decoded.
        """
        if not entries:
            return
        try:
            self._ensure()
        except ArchiverError as exc:
            if on_error is None:
                raise
            for entry in entries:
                on_error(entry, exc)
            return
        buckets: dict[tuple[int, int], list[Entry]] = {}
        for entry in entries:
            buckets.setdefault(self._grid(entry), []).append(entry)
        chunks: list[list[Entry]] = []
        for (h, w), group in buckets.items():
            per = max(1, min(batch_size, batch_pixels // (h * w * self._model_cfg.stride**2)))
            if h > TILE or w > TILE:
                per = 1  # tiled, exactly as pack measured it
            chunks += [group[i : i + per] for i in range(0, len(group), per)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="entropy") as pool:
            pending = pool.submit(self._prepare, chunks[0])
            for k, chunk in enumerate(chunks):
                try:
                    records, latents = pending.result()
                except ArchiverError:
                    if on_error is None:
                        raise
                    records, latents = None, None
                if k + 1 < len(chunks):
                    pending = pool.submit(self._prepare, chunks[k + 1])
                if records is None:  # some record of the batch is damaged: go one by one
                    for entry in chunk:
                        try:
                            yield (entry, *self.image(entry))
                        except ArchiverError as exc:
                            on_error(entry, exc)  # type: ignore[misc]
                    continue
                if len(chunk) == 1:  # alone: maybe large, decode() tiles it
                    pixels = [self._decoder.decode(latents[0], chunk[0].height, chunk[0].width)]  # type: ignore[union-attr, index]
                else:
                    pixels = self._decoder.decode_batch(latents)  # type: ignore[union-attr, arg-type]
                for entry, record, px in zip(chunk, records, pixels):
                    try:
                        image = self._restore(entry, px[: entry.height, : entry.width], record)
                    except ArchiverError as exc:
                        if on_error is None:
                            raise
                        on_error(entry, exc)
                        continue
                    yield entry, image, record

    def _restore(self, entry: Entry, pixels: np.ndarray, record: ImageRecord) -> Image.Image:
        if self._denoiser is not None:
            pixels = self._denoiser.apply(pixels)
        try:
            return restore_image(pixels, entry.mode, record.blobs)
        except (KeyError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.path}: entry {entry.name!r}: {exc}") from None

    def image(self, entry: Entry) -> tuple[Image.Image, ImageRecord]:
        """The restored image of ``entry`` (mode and size of the original) and its parsed record."""
        self._ensure()
        records, latents = self._prepare([entry])
        pixels = self._decoder.decode(latents[0], entry.height, entry.width)  # type: ignore[union-attr]
        return self._restore(entry, pixels, records[0]), records[0]
