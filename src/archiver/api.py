"""Reading an archive from Python: names, info, images as numpy arrays, files as bytes. No torch.

    import archiver

    with archiver.open("photos.nca") as arc:
        for name, pixels in arc.images():      # (name, H×W×C uint8), batched like extract
            ...
        first = arc.read(arc.names()[0])        # one entry: an array, or bytes for a byte-exact file

What an image reads as (:func:`archiver.decode.image_array`): H×W×C uint8, C the band count of the
mode the image is extracted in — RGB 3, RGBA 4 (alpha last), L 1, LA 2 — and a palette (P) image
its palette colours, RGB (the index plane is not exposed). These are the pixels ``extract`` writes:
exactly the file's for lossless formats (PNG, WebP, TIFF, BMP, GIF, PPM, TGA) and for every image
with ``extract --format png``; a JPEG or AVIF original is written back re-encoded at quality 95,
so that file's pixels differ from the array by the re-encoding.

Threads and processes: one handle may be shared by threads (h5py serialises its calls behind one
lock and ONNX Runtime sessions are thread-safe; the sessions are built once), though decoding gains
little from it since ONNX Runtime already uses every core. A handle must not cross a ``fork``: HDF5
file handles are not fork-safe, so each process opens its own (:class:`archiver.data.ArchiveDataset`
does this for DataLoader workers); using a handle in another process raises :class:`ArchiverError`.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import zstandard

from .container.digest import check_file_digest
from .container.entries import Entry
from .container.format import EntryKind
from .container.reader import ArchiveReader
from .container.records import ImageRecord
from .decode import ArchiveDecoder, Decoded
from .errors import ArchiverError, CorruptArchiveError, EntryNotFoundError, InputError

__all__ = ["Archive", "open", "DEFAULT_BATCH_SIZE"]

#: Images of one coded size per runtime call, as ``extract --batch-size`` (more helps small images
#: little: per-image entropy decoding dominates; memory is capped by ``decode.BATCH_PIXELS`` anyway).
DEFAULT_BATCH_SIZE = 8

#: Bytes per read when streaming a byte-exact file's zstd frame (bounds memory whatever the frame claims).
_BLOCK_BYTES = 1 << 20

#: What :meth:`Archive.read` returns: pixels of a coded image, or the bytes of a byte-exact file.
Content = Union[np.ndarray, bytes]


def open(path: str | os.PathLike, provider: str = "auto", threads: int | None = None, *,
         allow_damaged: bool = False) -> "Archive":  # fmt: skip
    """Open the ``.nca`` archive at ``path`` for reading; use it as a context manager.

    ``provider`` and ``threads`` choose ONNX Runtime's execution provider (``auto``, ``cpu``,
    ``cuda``, …, as ``extract --provider``) and intra-op thread count (None: ONNX Runtime's
    default, every core). The network is loaded on the first image read. A damaged archive (its
    whole-file checksum fails) is refused with :class:`CorruptArchiveError` unless
    ``allow_damaged``: then intact entries read normally and each damaged one raises when read.
    """
    return Archive(path, provider, threads, allow_damaged=allow_damaged)


#: What a damaged archive's error suggests from Python; the CLI's ``extract`` names ``--keep-going``.
API_DAMAGED_HINT = "archiver.open(..., allow_damaged=True) reads the intact entries"
CLI_DAMAGED_HINT = "extract --keep-going salvages the intact entries"


class Archive:
    """An open archive (see :func:`open` and the module documentation).

    ``spin=False`` (``extract``) stops ONNX Runtime's workers from busy-waiting between runs, for a
    process whose other threads need the cores and that does not fork while the handle is open.
    """

    def __init__(self, path: str | os.PathLike, provider: str = "auto", threads: int | None = None, *,
                 allow_damaged: bool = False, damaged_hint: str = API_DAMAGED_HINT, spin: bool = True) -> None:  # fmt: skip
        self.path = Path(path)
        try:
            self.reader = ArchiveReader(self.path, allow_damaged=allow_damaged)
        except CorruptArchiveError:
            # The reader's hint names the CLI's --keep-going; from Python the way is allow_damaged.
            if allow_damaged or check_file_digest(self.path) is not False:
                raise
            raise CorruptArchiveError(f"{self.path}: file checksum mismatch: the archive is damaged ({damaged_hint})") from None
        try:
            self.decoder = ArchiveDecoder(self.reader, provider, threads, spin)
        except BaseException:
            self.reader.close()
            raise
        self._pid = os.getpid()  # h5py handles must not be used across fork: checked on every read
        self._by_name = {e.name: e for e in self.reader.entries if e.kind in (EntryKind.IMAGE, EntryKind.FILE)}
        self._info: dict | None = None
        self._closed = False

    # -- what is in it ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the coded images and byte-exact files, in archive order (folders and symlinks,
        which have no content to read, are left out)."""
        return list(self._by_name)

    def image_names(self) -> list[str]:
        """Names of the coded images only, in archive order."""
        return [name for name, e in self._by_name.items() if e.kind is EntryKind.IMAGE]

    def entry(self, name: str) -> Entry:
        """The metadata of entry ``name`` (size, mode, format, PSNR, …); a name that is not a coded
        image or byte-exact file raises :class:`EntryNotFoundError` (a ``KeyError``)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise EntryNotFoundError(f"{self.path}: no image or file named {name!r}") from None

    def info(self) -> dict:
        """Totals, byte breakdown, training summary and config: what ``archiver info --json`` prints."""
        if self._info is None:
            from .inspect import archive_info

            self._info = archive_info(self.path)
        return self._info

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    # -- content ---------------------------------------------------------------------------------
    def read(self, name: str) -> Content:
        """The content of entry ``name``: an image's H×W×C uint8 pixels (see the module
        documentation), or a byte-exact file's bytes (SHA-256 checked against the original's).

        A damaged entry raises :class:`CorruptArchiveError` naming it; other entries still read.
        """
        entry = self.entry(name)
        self._check_process()
        if entry.kind is EntryKind.FILE:
            buffer = io.BytesIO()
            self.file_writer(entry)(buffer)
            return buffer.getvalue()
        return self.decoder.image(entry, as_array=True)[0]  # type: ignore[return-value]

    def images(
        self,
        names: Iterable[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: Callable[[str, ArchiverError], None] | None = None,
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, pixels)`` for the coded images ``names`` (default: all), decoded as
        ``extract`` decodes them: bucketed by coded size, ``batch_size`` images per runtime call,
        the entropy decoding of the next batch overlapping the network.

        Order is bucket order (images of one coded size together, first-seen order otherwise), not
        necessarily ``names`` order. A damaged image raises :class:`CorruptArchiveError`, or with
        ``on_error`` is reported to it as ``(name, error)`` and skipped.
        """
        entries = self.image_entries(names)  # now, not at the first next(): a bad name fails here
        self._check_process()
        report = (lambda e, exc: on_error(e.name, exc)) if on_error is not None else None
        decoded = self.decoder.images(entries, batch_size, on_error=report, as_array=True)
        return ((entry.name, pixels) for entry, pixels, _ in decoded)  # type: ignore[misc]

    def decoded(
        self, entries: list[Entry], batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: Callable[[Entry, ArchiverError], None] | None = None,
    ) -> Iterator[tuple[Entry, Decoded, ImageRecord]]:  # fmt: skip
        """:meth:`images` for ``extract``: (entry, Pillow image of the original's mode, record with
        the metadata to write back), through the same decoding path."""
        self._check_process()
        return self.decoder.images(entries, batch_size, on_error=on_error)

    def file_writer(self, entry: Entry) -> Callable[[io.RawIOBase], None]:
        """A function writing byte-exact ``entry``'s content to a binary handle.

        The record is read (CRC-checked) now, so a damaged record raises before anything is
        written. The zstd frame is streamed, and the byte count and SHA-256 checked as it arrives:
        a record inflating past the entry's size (a decompression bomb) stops at that size, and
        content that differs from the original's hash raises :class:`CorruptArchiveError`.
        """
        self._check_process()
        record = self.reader.read_record(entry)
        where = f"{self.path}: entry {entry.name!r}"

        def write(handle) -> None:
            digest, total = hashlib.sha256(), 0
            try:
                with zstandard.ZstdDecompressor().stream_reader(record) as stream:
                    for block in iter(lambda: stream.read(_BLOCK_BYTES), b""):
                        total += len(block)
                        if total > entry.size:
                            raise CorruptArchiveError(f"{where} inflates past its size")
                        digest.update(block)
                        handle.write(block)
            except zstandard.ZstdError as exc:
                raise CorruptArchiveError(f"{where} does not decompress: {exc}") from None
            if total != entry.size or digest.digest() != entry.source_sha256:
                raise CorruptArchiveError(f"{where} differs from the original's hash")

        return write

    def image_entries(self, names: Iterable[str] | None = None) -> list[Entry]:
        """Entries of the coded images ``names`` (default: all, in archive order); a missing name
        raises :class:`EntryNotFoundError`, a byte-exact file's :class:`InputError`."""
        if names is None:
            return [e for e in self._by_name.values() if e.kind is EntryKind.IMAGE]
        entries = [self.entry(name) for name in names]
        for entry in entries:
            if entry.kind is not EntryKind.IMAGE:
                raise InputError(f"{self.path}: entry {entry.name!r} is a byte-exact file, not a coded image "
                                 "(read() gives its bytes)")
        return entries

    def _check_process(self) -> None:
        if self._closed:
            raise ArchiverError(f"{self.path}: the archive is closed")
        if os.getpid() != self._pid:
            raise ArchiverError(
                f"{self.path}: this handle was opened in process {self._pid} and cannot be used after a "
                "fork; open the archive again in each process (archiver.data.ArchiveDataset does)"
            )

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file; the handle cannot read afterwards."""
        if not self._closed:
            self._closed = True
            self.reader.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<archiver.Archive {str(self.path)!r}: {len(self)} entries>"
