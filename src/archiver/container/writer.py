"""Atomic writer of .nca archives: everything goes to a temporary file that is renamed at the end."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import zstandard

from .. import __version__
from ..codec.context import ContextTables
from ..codec.tables import PRECISION, FrequencyTables
from .digest import index_digest, write_file_digest
from .entries import Entry
from .format import FORMAT_VERSION, IMAGE_FORMATS, MAGIC, RECORD_CHUNK_BYTES, USERBLOCK_BYTES, text

__all__ = ["ArchiveWriter", "partial_path"]


def partial_path(path: Path) -> Path:
    """The one temporary name a pack of ``path`` uses (``.<name>.partial`` beside it)."""
    return path.with_name(f".{path.name}.partial")


def _zstd() -> dict:
    # zstd through the HDF5 filter plugin, for the small metadata columns and tables.
    return dict(hdf5plugin.Zstd(clevel=19))


class ArchiveWriter:
    """Builds one archive. Use as a context manager; leaving it by an exception removes the temporary file.

    Records are spooled to disk as they come, so memory holds one record at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.tmp.unlink(missing_ok=True)  # a stale one from an interrupted run
        self._file = h5py.File(self.tmp, "w", libver=("v110", "latest"), userblock_size=USERBLOCK_BYTES)
        self._file.attrs["magic"] = text(MAGIC)
        self._file.attrs["format_version"] = np.int64(FORMAT_VERSION)
        self._file.attrs["archiver_version"] = text(__version__)
        self._file.attrs["created_utc"] = text(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        # Records are spooled to an anonymous temporary file and copied into one contiguous dataset at
        # commit: a chunked, resizable dataset would round the archive up to a whole chunk.
        self._spool = tempfile.TemporaryFile(dir=self.path.parent)
        self._entries: list[Entry] = []
        self._end = 0

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def set_json(self, name: str, value: dict) -> None:
        """Store a JSON document as a root string attribute (``config``, ``training``, ``summary``)."""
        self._file.attrs[name] = text(json.dumps(value, sort_keys=True))

    def write_model(self, blob: bytes, manifest: list[dict], name: str = "decoder") -> None:
        """Store a weight blob (:func:`archiver.codec.weights.pack_arrays`) at ``/model/<name>``:
        the decoder, or the encoder of an appendable archive."""
        ds = self._file.create_dataset(f"model/{name}", data=np.frombuffer(blob, dtype=np.uint8))
        ds.attrs["manifest"] = text(json.dumps(manifest))
        ds.attrs["sha256"] = text(hashlib.sha256(blob).hexdigest())

    def write_onnx(self, graph: bytes, opset: int, level: int = 19, name: str = "decoder_onnx") -> None:
        """Store an ONNX graph (without weights) as one zstd frame at ``/model/<name>``."""
        blob = zstandard.ZstdCompressor(level=level).compress(graph)
        ds = self._file.create_dataset(f"model/{name}", data=np.frombuffer(blob, dtype=np.uint8))
        ds.attrs["opset"] = np.int64(opset)
        ds.attrs["sha256"] = text(hashlib.sha256(blob).hexdigest())

    def write_denoiser(self, blob: bytes, manifest: list[dict], graph: bytes, opset: int, level: int = 19) -> None:
        """Store the kept post-filter: int8 weights at ``/model/denoiser``, graph at ``/model/denoiser_onnx``."""
        self.write_model(blob, manifest, name="denoiser")
        self.write_onnx(graph, opset, level, name="denoiser_onnx")

    def write_tables(self, tables: ContextTables | FrequencyTables) -> None:
        """Store the integer entropy tables under ``/model/prior``: quantized context counts, or
        per-channel frequencies (``FrequencyTables``, or a version-1 archive's tables that
        ``append`` keeps as they were)."""
        if isinstance(tables, FrequencyTables):
            tables = ContextTables.from_channel_tables(tables)
        group = self._file.create_group("model/prior")
        group.attrs["precision"] = np.int64(PRECISION)
        group.create_dataset("offsets", data=tables.offsets.astype(np.int32))
        group.create_dataset("lengths", data=tables.lengths.astype(np.int32))
        if tables.counts_q is None:
            group.attrs["model"] = text("channel")
            group.create_dataset("freqs", data=tables.freqs[:, 0, 0, :].astype(np.uint32), chunks=True, **_zstd())
            return
        group.attrs["model"] = text("context")
        group.create_dataset("modes", data=tables.modes.astype(np.int32))
        group.create_dataset("spatial_thresholds", data=tables.spatial_thresholds.astype(np.int32))
        group.create_dataset("channel_thresholds", data=tables.channel_thresholds.astype(np.int32))
        group.create_dataset("counts", data=tables.counts_q.astype(np.uint8), chunks=True, **_zstd())

    def add(self, entry: Entry, record: bytes) -> None:
        """Append one entry and its record; sets ``entry.offset/length/checksum``."""
        entry.offset, entry.length = self._end, len(record)
        entry.checksum = zlib.crc32(record)
        self._spool.write(record)
        self._end += len(record)
        self._entries.append(entry)

    def _write_data(self) -> None:
        data = self._file.create_dataset("entries/data", shape=(self._end,), dtype=np.uint8)
        self._spool.seek(0)
        pos = 0
        while pos < self._end:
            block = self._spool.read(RECORD_CHUNK_BYTES * 16)
            data[pos : pos + len(block)] = np.frombuffer(block, dtype=np.uint8)
            pos += len(block)
        self._spool.close()

    def _write_columns(self) -> None:
        group = self._file.require_group("entries")
        entries = self._entries
        n = len(entries)
        group.attrs["count"] = np.int64(n)
        group.attrs["notes"] = text(json.dumps({str(i): e.note for i, e in enumerate(entries) if e.note}))

        def column(name: str, values, dtype) -> None:
            array = np.asarray(values, dtype=dtype)
            if n:
                group.create_dataset(name, data=array, chunks=True, **_zstd())
            else:
                group.create_dataset(name, data=array)

        paths = b"".join(e.path + b"\0" for e in entries)
        column("path", np.frombuffer(paths, dtype=np.uint8), np.uint8)
        column("kind", [int(e.kind) for e in entries], np.uint8)
        column("mtime_ns", [e.mtime_ns for e in entries], np.int64)
        column("perm", [e.perm for e in entries], np.uint32)
        column("size", [e.size for e in entries], np.int64)
        column("offset", [e.offset for e in entries], np.uint64)
        column("length", [e.length for e in entries], np.uint64)
        column("checksum", [e.checksum for e in entries], np.uint32)
        column(
            "source_sha256",
            np.array([list(e.source_sha256) for e in entries], dtype=np.uint8).reshape(n, 32),
            np.uint8,
        )
        column("width", [e.width for e in entries], np.uint32)
        column("height", [e.height for e in entries], np.uint32)
        column("mode", [int(e.mode) for e in entries], np.uint8)
        column("format", [IMAGE_FORMATS.index(e.format) for e in entries], np.uint8)
        column("psnr", [e.psnr for e in entries], np.float32)
        column("pixel_crc32", [e.pixel_crc32 for e in entries], np.uint32)

    def commit(self) -> int:
        """Finish the file, fsync it and rename it into place. Returns the archive size in bytes."""
        self._write_data()
        self._write_columns()
        self._file.attrs["index_sha256"] = text(index_digest(self._file))
        self._file.close()
        write_file_digest(self.tmp)
        with open(self.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.path)
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            dir_fd = None
        if dir_fd is not None:
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return self.path.stat().st_size

    def abort(self) -> None:
        """Close and delete the temporary file (safe to call twice)."""
        for handle in (self._file, self._spool):
            try:
                handle.close()
            except Exception:
                pass
        self.tmp.unlink(missing_ok=True)
