"""Turning one image entry of an open archive back into a Pillow image."""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Union

import numpy as np
from PIL import Image

from .container.entries import Entry
from .container.format import ImageMode
from .container.reader import ArchiveReader
from .container.records import ImageRecord
from .collection.images import restore_image
from .errors import ArchiverError, CorruptArchiveError

__all__ = ["ArchiveDecoder", "BATCH_PIXELS", "Decoded", "image_array"]

#: Default cap on the coded pixels decoded in one runtime call (bounds memory: the widest decoder
#: activation is 16 float32 channels at full resolution, 64 bytes a pixel, so 4 Mpx ≈ 256 MiB).
BATCH_PIXELS = 4_000_000
#: Coded pixels whose latents the entropy thread decodes in one round (one pass of the wavefront
#: coder over all their groups). A wavefront step costs about 0.3 ms whatever its size, so a photo
#: album decodes fastest in big rounds; the round's latents and the coder's buffers take some
#: 60 bytes a pixel (2 Mpx ≈ 120 MB). Measured on a 48-photo album (0.37 Mpx each, 2 cores): see
#: the README's extraction speed.
ENTROPY_PIXELS = 2_000_000
#: Rounds queued for the entropy thread: the one it decodes and the next, so that it goes on while
#: the runtime synthesizes the round before (with one queued, a timeline showed it idle for 0.19 s
#: of a 1.6 s extract, waiting while a round of 24 crops was synthesized). The decoded latents of a
#: queued round wait in memory: 4 bytes a coded value, ≤ 8 MB a round of :data:`ENTROPY_PIXELS`.
#: Measured with :data:`LAST_ROUND_SHARE` below, fresh extracts of 48 heldout crops of 256² (2 cores,
#: alternating, median of 8; the machine's speed drifted between the two sessions of runs):
#: rounds growing from the first with one queued (the code before) 1.996 s, shrinking to the last
#: with two queued 1.737 s, shrinking with one queued 1.778 s, growing with two queued 1.774 s;
#: an earlier set of 10: 1.659 s before, 1.574 s after.
ENTROPY_AHEAD = 2
#: The last round is this fraction of :data:`ENTROPY_PIXELS` (the one before twice that, …, up to
#: all of it). Nothing overlaps the synthesis and writing of the last round, so a small last round
#: keeps that tail short; a round's entropy decoding (about 13 ms a 256² crop plus 0.08 s a round,
#: measured alone) outlasts the synthesis of the round before (about 8 ms a crop) even as the rounds
#: shrink, so the runtime still keeps up. Measurements: :data:`ENTROPY_AHEAD`. One round for all 48
#: crops, synthesized on both cores afterwards, took 1.93 s against 1.68 s.
LAST_ROUND_SHARE = 4

#: What :meth:`ArchiveDecoder.images` yields per image: a Pillow image (for writing files) or an
#: H×W×C uint8 array (:func:`image_array`).
Decoded = Union[Image.Image, np.ndarray]


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None


@contextlib.contextmanager
def _single_threaded_blas():
    """numpy's BLAS on one thread while images decode (the first decoder in sets it, the last one out
    restores it). The entropy coder's small matrix products gain nothing from BLAS threads, and
    their busy-waiting took the cores the runtime and the file writers use: extracting a 48-photo
    album (default codec of 2026-12, 2 cores) took 9.2 s with them and 6.4–7.1 s without."""
    global _blas_users, _blas_limit
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


def image_array(image: Image.Image) -> np.ndarray:
    """H×W×C uint8 pixels of a restored image, exactly those a file written from it holds.

    C is the mode's band count (RGB 3, RGBA 4, L 1, LA 2); a palette image comes back as its
    palette colours (RGB, 3 channels), i.e. ``Image.open(file).convert("RGB")`` of the written file.
    """
    if image.mode == "P":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


class ArchiveDecoder:
    """Decodes image entries through ONNX Runtime (no torch); the network is built on first use (the
    reader entropy-decodes the latents with the codec's coder)."""

    def __init__(self, reader: ArchiveReader, provider: str = "auto", threads: int | None = None,
                 spin: bool = True) -> None:  # fmt: skip
        self.reader = reader
        self.provider = provider
        self.threads = threads
        self.spin = spin  # runtime workers busy-wait between runs (runtime.session._session)
        self._decoder = None
        self._denoiser = None
        self._side = reader.codec  # the codec's read side (archiver.codecs): stride, tiles, runtime
        # Threads sharing one decoder (archiver.open's handle) must not build the sessions twice.
        self._build_lock = threading.Lock()

    def _ensure(self) -> None:
        if self._decoder is not None:
            return
        with self._build_lock:
            if self._decoder is None:
                self._build()

    def _build(self) -> None:
        decoder = self._side.runtime(self.provider, self.threads, self.spin)
        if self.reader.has_denoiser:
            from .runtime.proto import attach_weights
            from .runtime.session import OnnxDenoiser

            graph = attach_weights(self.reader.onnx_graph("denoiser_onnx"), self.reader.model_arrays("denoiser"))
            self._denoiser = OnnxDenoiser(graph, self.provider, self.threads)
        self._decoder = decoder  # last: it marks the decoder as built

    def _prepare(self, chunk: list[Entry]) -> tuple[list[ImageRecord], np.ndarray]:
        """Records and stacked synthesis inputs of one batch (all of one latent shape)."""
        records, latents = self._read(chunk)
        return records, np.stack(latents)

    def _read(self, entries: list[Entry]) -> tuple[list[ImageRecord], list[np.ndarray]]:
        """Records and synthesis inputs of ``entries``, their groups entropy-decoded together
        (:meth:`ArchiveReader.read_images`); errors name the entry."""
        try:
            # Version 3 decodes an image's whole group once (cached by the reader); older versions
            # one record. Either way its errors should name the entry.
            read = self.reader.read_images(entries)
        except CorruptArchiveError as exc:
            if len(entries) > 1 or repr(entries[0].name) in str(exc):
                raise
            raise CorruptArchiveError(f"{self.reader.path}: entry {entries[0].name!r}: {exc}") from None
        records, latents = [], []
        for entry, (latent, record) in zip(entries, read):
            try:
                latents.append(self._side.synthesis_input(latent, record))
            except CorruptArchiveError as exc:
                raise CorruptArchiveError(f"{self.reader.path}: entry {entry.name!r}: {exc}") from None
            records.append(record)
        return records, latents

    def _prepare_many(self, chunks: list[list[Entry]]) -> list[tuple[list[ImageRecord], np.ndarray] | ArchiverError]:
        """:meth:`_prepare` of several batches, their groups entropy-decoded in one pass (the
        wavefront coder's per-step cost is then paid once for all of them); a batch that fails
        gives its error instead (each batch is then prepared alone, so that the others still
        decode)."""
        if len(chunks) > 1:
            try:
                records, latents = self._read([entry for chunk in chunks for entry in chunk])
            except ArchiverError:
                pass
            else:
                out, first = [], 0
                for chunk in chunks:
                    out.append((records[first : first + len(chunk)], np.stack(latents[first : first + len(chunk)])))
                    first += len(chunk)
                return out
        out = []
        for chunk in chunks:
            try:
                out.append(self._prepare(chunk))
            except ArchiverError as exc:
                out.append(exc)
        return out

    def _chunks(self, entries: list[Entry], batch_size: int, batch_pixels: int) -> list[list[Entry]]:
        """Entries bucketed by latent shape (first-seen order), cut into runtime batches."""
        buckets: dict[tuple[int, int], list[Entry]] = {}
        for entry in entries:
            buckets.setdefault(self.reader.latent_shape(entry), []).append(entry)
        chunks: list[list[Entry]] = []
        for (h, w), group in buckets.items():
            per = max(1, min(batch_size, batch_pixels // (h * w * self._side.stride**2)))
            if h > self._side.tile or w > self._side.tile:
                per = 1  # tiled, exactly as pack measured it
            chunks += [group[i : i + per] for i in range(0, len(group), per)]
        return chunks

    def images(
        self,
        entries: list[Entry],
        batch_size: int = 8,
        batch_pixels: int = BATCH_PIXELS,
        on_error: Callable[[Entry, ArchiverError], None] | None = None,
        as_array: bool = False,
    ) -> Iterator[tuple[Entry, Decoded, ImageRecord]]:
        """Decode many image entries: bucketed by latent shape so a batch is one runtime call, with the
        entropy decoding of the next batch overlapping the network run of this one.

        A batch holds at most ``batch_size`` images and ``batch_pixels`` coded pixels (one image at
        least). Yields (entry, restored image, record) in bucket order: a Pillow image of the
        original's mode, or with ``as_array`` its H×W×C uint8 array (:func:`image_array`). With
        ``on_error``, a damaged entry is reported to it and skipped instead of raising; the others
        are still decoded. This is the one decoding path of ``extract`` and ``archiver.open``.
        """
        if not entries:
            return
        with _single_threaded_blas():
            yield from self._images(entries, batch_size, batch_pixels, on_error, as_array)

    def _images(self, entries, batch_size, batch_pixels, on_error, as_array):
        rounds = self._rounds(self._chunks(entries, batch_size, batch_pixels), min(batch_pixels, ENTROPY_PIXELS))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="entropy") as pool:
            # The first rounds' entropy decoding runs while the runtime session is built; the
            # thread keeps ENTROPY_AHEAD rounds queued, so that it never waits for the synthesis.
            pending = deque(pool.submit(self._prepare_many, r) for r in rounds[:ENTROPY_AHEAD])
            try:
                yield from self._consume(rounds, pending, pool, entries, on_error, as_array)
            finally:
                for future in pending:  # a consumer that stops early does not wait for them
                    future.cancel()

    def _consume(self, rounds, pending, pool, entries, on_error, as_array):
        """:meth:`_images` once the rounds are queued: build the runtime, then run each round's
        batches through it as the entropy thread delivers them, queueing the rounds after."""
        try:
            self._ensure()
        except ArchiverError as exc:
            if on_error is None:
                raise
            for entry in entries:
                on_error(entry, exc)
            return
        for k, chunks in enumerate(rounds):
            prepared = pending.popleft().result()
            if k + ENTROPY_AHEAD < len(rounds):
                pending.append(pool.submit(self._prepare_many, rounds[k + ENTROPY_AHEAD]))
            for chunk, result in zip(chunks, prepared):
                if isinstance(result, ArchiverError):
                    if on_error is None:
                        raise result
                    for entry in chunk:  # some record of the batch is damaged: go one by one
                        try:
                            yield (entry, *self.image(entry, as_array))
                        except ArchiverError as exc:
                            on_error(entry, exc)
                    continue
                yield from self._finish_chunk(chunk, *result, on_error, as_array)

    def _rounds(self, chunks: list[list[Entry]], pixels: int) -> list[list[list[Entry]]]:
        """Consecutive batches cut into the entropy thread's rounds of at most ``pixels`` coded
        pixels (one batch at least), the rounds shrinking towards the end (see
        :data:`LAST_ROUND_SHARE`): cut from the last batch backwards, the last round's cap is
        ``pixels // LAST_ROUND_SHARE``, each earlier one twice the next, up to ``pixels``."""
        rounds: list[list[list[Entry]]] = []
        total, cap = 0, max(1, pixels // LAST_ROUND_SHARE)
        for chunk in reversed(chunks):
            size = sum(math.prod(self.reader.latent_shape(e)) for e in chunk) * self._side.stride**2
            if not rounds or total + size > cap:
                if rounds:
                    cap = min(pixels, 2 * cap)
                rounds.append([])
                total = 0
            rounds[-1].append(chunk)
            total += size
        return [r[::-1] for r in reversed(rounds)]  # cut from the end: back in the batches' order

    def _finish_chunk(
        self,
        chunk: list[Entry],
        records: list[ImageRecord],
        latents: np.ndarray,
        on_error: Callable[[Entry, ArchiverError], None] | None,
        as_array: bool,
    ) -> Iterator[tuple[Entry, Decoded, ImageRecord]]:
        """Run one batch through the network and restore each image."""
        if len(chunk) == 1:  # alone: maybe large, decode() tiles it
            pixels = [self._decoder.decode(latents[0], chunk[0].height, chunk[0].width)]  # type: ignore[union-attr]
        else:
            pixels = self._decoder.decode_batch(latents)  # type: ignore[union-attr]
        for entry, record, px in zip(chunk, records, pixels):
            try:
                image = self._restore(entry, px[: entry.height, : entry.width], record, as_array)
            except ArchiverError as exc:
                if on_error is None:
                    raise
                on_error(entry, exc)
                continue
            yield entry, image, record

    def _restore(self, entry: Entry, pixels: np.ndarray, record: ImageRecord, as_array: bool = False) -> Decoded:
        if self._denoiser is not None:
            pixels = self._denoiser.apply(pixels)
        if as_array and entry.mode is ImageMode.RGB:
            # The decoded pixels are the file's pixels: no Pillow round trip, and a copy so that the
            # array does not keep the whole batch's output alive.
            return np.array(pixels, dtype=np.uint8, order="C", copy=True)
        try:
            image = restore_image(pixels, entry.mode, record.blobs)
        except (KeyError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.path}: entry {entry.name!r}: {exc}") from None
        return image_array(image) if as_array else image

    def image(self, entry: Entry, as_array: bool = False) -> tuple[Decoded, ImageRecord]:
        """The restored image of ``entry`` (mode and size of the original; with ``as_array`` its
        H×W×C uint8 array, :func:`image_array`) and its parsed record."""
        self._ensure()
        with _single_threaded_blas():
            records, latents = self._prepare([entry])
            pixels = self._decoder.decode(latents[0], entry.height, entry.width)  # type: ignore[union-attr]
            return self._restore(entry, pixels, records[0], as_array), records[0]
