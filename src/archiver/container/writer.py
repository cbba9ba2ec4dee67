"""Atomic writer of .nca archives (format version 3): everything goes to a temporary file that is
renamed at the end.

Records are spooled to disk as blocks of ``/data``: one block per byte-exact file or symlink, one
per distinct shared metadata blob, and one per *image group*: up to :data:`GROUP_IMAGES` images of
one latent shape whose latents are range-coded as one stream (one coder flush, no per-image length
or checksum), followed by one zstd frame of their extras. ``/index`` (:mod:`.index`) describes it all.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import zstandard

from .. import __version__
from ..codec.context import ContextTables
from ..codec.gain import check_gain
from ..codec.entropy import LatentCoder
from ..codec.tables import FrequencyTables
from .columns import put_varint
from .digest import index_digest, write_file_digest
from .entries import Entry
from .format import FORMAT_VERSION, MAGIC, RECORD_CHUNK_BYTES, SHARED_BLOBS, USERBLOCK_BYTES, EntryKind, text
from .index import Block, Index, encode_index
from .records import CODEC_BLOB

__all__ = ["ArchiveWriter", "partial_path", "GROUP_IMAGES", "GROUP_VALUES", "PENDING_VALUES"]

#: Most images in one group. A group is the unit of random access (extracting one image entropy-
#: decodes its group up to it: the 256 latents of a group of 32 px thumbnails took 28 ms) and of
#: salvage (a damaged byte costs its group). One record per image cost 8 B of length prefixes, two
#: CRC-32s and a range-coder flush (up to 4 B) per thumbnail; a group pays them once.
GROUP_IMAGES = 256
#: Most latent values in one group (1 MiB of int32): large images form small groups.
GROUP_VALUES = 1 << 18
#: Most latent values waiting in unfinished groups (64 MiB of int32) before the largest is written.
PENDING_VALUES = 1 << 24
_U32 = struct.Struct("<I")


def partial_path(path: Path) -> Path:
    """The one temporary name a pack of ``path`` uses (``.<name>.partial`` beside it)."""
    return path.with_name(f".{path.name}.partial")


def graph_blob(graph: bytes, level: int = 19) -> bytes:
    """The bytes an ONNX graph takes in the archive: one zstd frame at the archive's level."""
    return zstandard.ZstdCompressor(level=level).compress(graph)


class ArchiveWriter:
    """Builds one archive. Use as a context manager; leaving it by an exception removes the temporary file.

    Blocks are spooled to disk as they are finished, so memory holds at most the unfinished image
    groups (:data:`PENDING_VALUES` latent values) and one record.
    """

    def __init__(self, path: Path, level: int = 19) -> None:
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.tmp.unlink(missing_ok=True)  # a stale one from an interrupted run
        # fs_strategy "none": no free-space tracking, so HDF5 does not round its metadata up to a
        # 2,048-byte block (measured: 1,966 instead of 2,048 bytes for a group and five datasets;
        # each contiguous dataset costs about 270 bytes of object header, each attribute about 55).
        self._file = h5py.File(
            self.tmp, "w", libver=("v110", "latest"), userblock_size=USERBLOCK_BYTES, fs_strategy="none"
        )
        self._file.attrs["magic"] = text(MAGIC)
        self._file.attrs["format_version"] = np.int64(FORMAT_VERSION)
        self._created = {
            "archiver_version": __version__,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        # Blocks are spooled to an anonymous temporary file and copied into one contiguous dataset at
        # commit: a chunked, resizable dataset would round the archive up to a whole chunk.
        self._spool = tempfile.TemporaryFile(dir=self.path.parent)
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._index = Index(entries=[], entry_blocks=[], blocks=[])
        self._end = 0
        self._coder: LatentCoder | None = None
        self._pending: dict[tuple, list[tuple[int, np.ndarray, dict, dict]]] = {}
        self._pending_values = 0
        self._kept: dict[tuple, tuple[int, int]] = {}  # ("kept", group) -> (pixel check, members)
        self._shared: dict[bytes, int] = {}  # SHA-256 of a metadata blob -> its block
        self.latent_bytes = 0  #: bytes of the image groups' latent streams written so far

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def set_json(self, name: str, value: dict) -> None:
        """Store a JSON document (``config``, ``training``, ``summary``) in the index."""
        self._index.documents[name] = json.loads(json.dumps(value))

    def write_model(self, blob: bytes, manifest: list[dict], name: str = "decoder") -> None:
        """Store a weight blob (:func:`archiver.codec.weights.pack_arrays`) as a block of ``/data``:
        the decoder, the encoder of an appendable archive or the denoiser (``name``); its block,
        manifest and SHA-256 go to the index's model section."""
        block = self._block(blob)
        self._index.model[name] = {"block": block, "manifest": manifest, "sha256": hashlib.sha256(blob).hexdigest()}

    def write_onnx(self, graph: bytes, opset: int, level: int = 19, name: str = "decoder_onnx") -> None:
        """Store an ONNX graph (without weights) as one zstd frame, a block of ``/data``."""
        blob = graph_blob(graph, level)
        block = self._block(blob)
        self._index.model[name] = {"block": block, "opset": int(opset), "sha256": hashlib.sha256(blob).hexdigest()}

    def write_denoiser(self, blob: bytes, manifest: list[dict], graph: bytes, opset: int, level: int = 19) -> None:
        """Store the kept post-filter: int8 weights at ``/model/denoiser``, graph at ``/model/denoiser_onnx``."""
        self.write_model(blob, manifest, name="denoiser")
        self.write_onnx(graph, opset, level, name="denoiser_onnx")

    def write_entropy(self, blob: bytes, manifest: list[dict], coder) -> None:
        """A codec's own entropy model (:mod:`archiver.codecs`): its arrays as model blob ``entropy``,
        and its coder (``encode_many``) codes every image group added from now on. The container
        stores the blob as it is; only the codec knows what the arrays mean."""
        self.write_model(blob, manifest, name="entropy")
        self._coder = coder

    def write_tables(self, tables: ContextTables | FrequencyTables) -> None:
        """Keep the integer entropy tables (they go to the index's model section) and code every
        image group added from now on with them."""
        if isinstance(tables, FrequencyTables):
            tables = ContextTables.from_channel_tables(tables)
        self._index.tables = tables
        self._coder = LatentCoder(tables)

    def _block(self, data: bytes, latent_length: int = -1, pixel_crc32: int = 0) -> int:
        block = Block(self._end, len(data), zlib.crc32(data), latent_length, pixel_crc32)
        self._spool.write(data)
        self._end += len(data)
        self._index.blocks.append(block)
        return len(self._index.blocks) - 1

    def _append(self, entry: Entry, block: int) -> int:
        self._index.entries.append(entry)
        self._index.entry_blocks.append(block)
        return len(self._index.entries) - 1

    def add(self, entry: Entry, record: bytes) -> None:
        """Append a folder, file or symlink entry and its record (its own block unless empty);
        sets ``entry.offset/length/checksum/block``. Images go through :meth:`add_image`."""
        if entry.kind is EntryKind.IMAGE:
            raise ValueError("image entries are added with add_image (their latent, not a record)")
        block = self._block(record) if record or entry.kind is not EntryKind.DIRECTORY else -1
        if block >= 0:
            b = self._index.blocks[block]
            entry.offset, entry.length, entry.checksum, entry.block = b.offset, b.length, b.checksum, block
        self._append(entry, block)

    def add_image(
        self, entry: Entry, latent: np.ndarray, info: dict | None = None, blobs: dict | None = None, group=None,
        gain: int = 0, codec: bytes = b"",
    ) -> None:
        """Append an image entry: its integer latent (C, h, w) joins the group of its shape; ``info``
        and ``blobs`` are its extras (metadata blobs named in :data:`SHARED_BLOBS` are stored once
        per archive and referenced). Needs :meth:`write_tables` first. ``group``: a group announced
        with :meth:`keep_group` instead (``append`` keeps a version-3 archive's groups whole). ``gain``:
        the image's quantization gain code (:mod:`archiver.codec.gain`; 0 is not stored); ``codec``:
        its per-image codec data (stored as the blob :data:`~archiver.container.records.CODEC_BLOB`)."""
        if self._coder is None:
            raise ValueError("write_tables must come before the first image")
        latent = np.ascontiguousarray(latent, dtype=np.int32)
        key = latent.shape if group is None else ("kept", group)
        if group is not None and key not in self._kept:
            raise ValueError(f"group {group!r} was not announced with keep_group")
        if blobs and CODEC_BLOB in blobs:
            raise ValueError(f"an image's metadata blob cannot be named {CODEC_BLOB!r}")
        extras = self._extras(info or {}, {**(blobs or {}), **({CODEC_BLOB: codec} if codec else {})}, gain)
        row = self._append(entry, -1)
        members = self._pending.setdefault(key, [])
        members.append((row, latent, extras[0], extras[1]))
        self._pending_values += latent.size
        if key in self._kept:
            if len(members) == self._kept[key][1]:
                self._flush(key)
            return
        if len(members) >= GROUP_IMAGES or len(members) * latent.size >= GROUP_VALUES:
            self._flush(key)
        # Kept groups are written whole when their last member comes, never early.
        while self._pending_values > PENDING_VALUES and any(k not in self._kept for k in self._pending):
            free = [k for k in self._pending if k not in self._kept]
            self._flush(max(free, key=lambda k: len(self._pending[k]) * int(np.prod(k))))

    def keep_group(self, group, pixel_check: int, size: int) -> None:
        """Announce a group whose ``size`` members will be added with ``add_image(..., group=group)``:
        they are written as one group, in that order, with this pixel check (the members' own pixel
        CRC-32s are not known: a version-3 archive keeps only its groups' checks)."""
        self._kept.setdefault(("kept", group), (int(pixel_check), int(size)))

    def _extras(self, info: dict, blobs: dict, gain: int = 0) -> tuple[dict, dict]:
        """(JSON header, inline blobs) of one image's extras; shared blobs become block references."""
        header: dict = {"info": info} if info else {}
        if gain:
            header["gain"] = check_gain(gain)
        inline, shared = {}, {}
        for name in sorted(blobs):
            data = bytes(blobs[name])
            if name in SHARED_BLOBS:
                digest = hashlib.sha256(data).digest()
                if digest not in self._shared:
                    self._shared[digest] = self._block(self._cctx.compress(data))
                shared[name] = self._shared[digest]
            else:
                inline[name] = data
        if inline:
            header["blobs"] = {k: len(v) for k, v in inline.items()}
        if shared:
            header["shared"] = shared
        return header, inline

    def _flush(self, key: tuple) -> None:
        """Write one pending group: its latent stream, then one zstd frame of its members' extras."""
        members = self._pending.pop(key)
        self._pending_values -= sum(m[1].size for m in members)
        stream = self._coder.encode_many(m[1] for m in members)  # type: ignore[union-attr]
        extras = b""
        if any(m[2] for m in members):
            parts = []
            for _, _, header, inline in members:
                encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() if header else b""
                parts.append(put_varint(len(encoded)) + encoded + b"".join(inline[k] for k in sorted(inline)))
            extras = self._cctx.compress(b"".join(parts))
        entries = [self._index.entries[m[0]] for m in members]
        if key in self._kept:
            pixel_check = self._kept.pop(key)[0]
        else:
            pixel_check = zlib.crc32(b"".join(_U32.pack(e.pixel_crc32 & 0xFFFFFFFF) for e in entries))
        block = self._block(stream + extras, len(stream), pixel_check)
        b = self._index.blocks[block]
        for member, (row, *_rest) in enumerate(members):
            self._index.entry_blocks[row] = block
            entry = self._index.entries[row]
            entry.offset, entry.length, entry.checksum, entry.block, entry.member = b.offset, b.length, b.checksum, block, member
        self.latent_bytes += len(stream)

    def _write_data(self) -> None:
        data = self._file.create_dataset("data", shape=(self._end,), dtype=np.uint8)
        self._spool.seek(0)
        pos = 0
        while pos < self._end:
            block = self._spool.read(RECORD_CHUNK_BYTES * 16)
            data[pos : pos + len(block)] = np.frombuffer(block, dtype=np.uint8)
            pos += len(block)
        self._spool.close()

    def _write_index(self) -> None:
        for key in list(self._pending):
            self._flush(key)
        self._index.documents.setdefault("summary", {})
        self._index.documents["created"] = self._created
        summary = self._index.documents.get("summary")
        if summary is not None and "latent_bytes" in summary:
            summary["latent_bytes"] = self.latent_bytes  # what the groups' streams really take
        raw = encode_index(self._index)
        self._file.create_dataset("index", data=np.frombuffer(raw, dtype=np.uint8))

    def commit(self) -> int:
        """Finish the file, fsync it and rename it into place. Returns the archive size in bytes."""
        self._write_index()
        self._write_data()
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
