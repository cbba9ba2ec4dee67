"""The version-3 index: every entry, block, checksum and document of an archive in one dataset.

``/index`` (uint8) is laid out as

    u8 section count S (= 6) | S × u32 LE compressed section length | the S sections

and every section is one zstd frame (content size in its header, at most :data:`MAX_SECTION_BYTES`;
the documents section's compressed with :data:`~archiver.container.dictionary.DOCUMENTS_DICTIONARY`)
holding, in this order (columns as in :mod:`archiver.container.columns`; n entries, b blocks,
m image entries, f byte-exact file entries):

    0 layout     varint n | varint b | ints[n] block of each entry + 1 (0: no record, a folder)
                 | ints[b] block length | ints[b] latent length + 1 (0: the block is not an image group)
    1 names      names[n] (front-coded relative POSIX paths, raw bytes)
    2 metadata   ints[n] kind | ints[n] mtime_ns | ints[n] perm | ints[n] size
                 | ints[m] width | ints[m] height | ints[m] mode | ints[m] format | ints[m] psnr (centi-dB)
                 | bytes notes JSON
    3 checksums  ints[b] CRC-32 of each block | ints[b] group pixel CRC-32 (0 for other blocks)
                 | f × 32 bytes SHA-256 of each byte-exact file's original, in entry order
    4 documents  bytes config JSON | bytes training JSON | bytes summary JSON | bytes created JSON
                 | bytes codec JSON (``{}``: the legacy codec of ``config.model``; see archiver.codecs)
    5 model      bytes model JSON (per model blob: block, manifest, sha256, opset) | entropy tables:
                 u8 has_counts | varint C | varint S | varint K | varint L | ints[C] offsets
                 | ints[C] lengths | ints[C] modes | ints[C·(S−1)] spatial thresholds
                 | ints[C·(K−1)] channel thresholds | C·slots·K·L bytes counts (has_counts = 1) or
                 ints[C·L] frequencies (0: per-channel tables, S = K = 1); or u8 0xFF: no tables

``psnr`` is ``round(100 · dB)`` clipped to 0 … 65,533; 65,534 means +∞ and 65,535 NaN. Blocks lie
back to back in ``/data`` in block order, so a block's offset is the sum of the lengths before it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

import numpy as np
import zstandard

from ..codec.context import ContextTables
from ..codec.tables import FrequencyTables
from ..errors import CorruptArchiveError
from .dictionary import documents_dictionary
from .columns import Cursor, get_names, put_bytes, put_ints, put_names, put_varint
from .entries import Entry
from .format import IMAGE_FORMATS, EntryKind, ImageMode

__all__ = ["Block", "Index", "SECTIONS", "MAX_SECTION_BYTES", "MAX_ENTRIES", "encode_index", "decode_index", "psnr_code", "psnr_value"]

#: Section names in order; ``info`` reports each one's compressed bytes.
SECTIONS = ("layout", "names", "metadata", "checksums", "documents", "model")
#: Significant digits of the floats of ``training.history`` as stored (the losses and PSNRs it
#: records vary in the fourth digit; 2,000 thumbnails at 8 minutes made 40 checks, 7.9 kB of JSON).
HISTORY_DIGITS = 6
#: JSON documents of the documents section, in order.
DOCUMENTS = ("config", "training", "summary", "created", "codec")
#: Largest decompressed section a reader accepts (bytes): 20,000 entries take about 200 kB.
MAX_SECTION_BYTES = 1 << 30
#: Most entries (and blocks) a reader accepts, checked before any column is allocated.
MAX_ENTRIES = 1 << 26
_U32 = struct.Struct("<I")
_NO_TABLES = 0xFF


@dataclass(frozen=True)
class Block:
    """One stretch of ``/data``: an entry's record, an image group or a shared metadata blob."""

    offset: int
    length: int
    checksum: int
    latent_length: int = -1  #: bytes of the group's latent stream; -1 when not an image group
    pixel_crc32: int = 0  #: an image group's pixel check (CRC-32 of its members' pixel CRCs)

    @property
    def is_group(self) -> bool:
        return self.latent_length >= 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "Block":
        return cls(**data)


@dataclass
class Index:
    """Everything ``/index`` holds, parsed. ``entry_blocks[i]`` is entry i's block (-1: none)."""

    entries: list[Entry]
    entry_blocks: list[int]
    blocks: list[Block]
    documents: dict[str, dict] = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    tables: ContextTables | None = None
    section_bytes: dict[str, int] = field(default_factory=dict)


def psnr_code(psnr: float) -> int:
    """uint16 centi-dB code of a PSNR (see module doc)."""
    if math.isnan(psnr):
        return 65535
    if math.isinf(psnr):
        return 65534
    return int(min(max(round(psnr * 100), 0), 65533))


def psnr_value(code: int) -> float:
    return math.nan if code == 65535 else math.inf if code == 65534 else code / 100


def _round(value, digits: int = HISTORY_DIGITS):
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{digits}g}")
    return value


def compact_training(training: dict) -> dict:
    """The ``training`` document as stored: ``history`` (one object per convergence check) by column,
    ``{"<key>": [value or null per check]}``, floats to :data:`HISTORY_DIGITS` significant digits."""
    history = training.get("history")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return training
    keys = sorted({k for h in history for k in h})
    return {**training, "history": {k: [_round(h.get(k)) for h in history] for k in keys}}


def expand_training(training: dict) -> dict:
    """Inverse of :func:`compact_training` (a check's null values are left out)."""
    history = training.get("history")
    if not isinstance(history, dict):
        return training
    columns = [(k, v) for k, v in history.items() if isinstance(v, list)]
    n = max((len(v) for _, v in columns), default=0)
    rows = [{k: v[i] for k, v in columns if i < len(v) and v[i] is not None} for i in range(n)]
    return {**training, "history": rows}


def _tables_bytes(tables: ContextTables | None) -> bytes:
    if tables is None:
        return bytes([_NO_TABLES])
    c, s, k, length = tables.channels, tables.spatial, tables.buckets, tables.freqs.shape[3]
    head = bytes([0 if tables.counts_q is None else 1]) + b"".join(put_varint(v) for v in (c, s, k, length))
    body = put_ints(tables.offsets) + put_ints(tables.lengths) + put_ints(tables.modes)
    body += put_ints(tables.spatial_thresholds.ravel()) + put_ints(tables.channel_thresholds.ravel())
    if tables.counts_q is None:
        return head + body + put_ints(tables.freqs[:, 0, 0, :].ravel())
    return head + body + np.ascontiguousarray(tables.counts_q, dtype=np.uint8).tobytes()


def _read_tables(cur: Cursor) -> ContextTables | None:
    (flag,) = cur.take(1)
    if flag == _NO_TABLES:
        return None
    c, s, k, length = (cur.varint() for _ in range(4))
    if flag not in (0, 1) or not (0 < c <= 4096 and 0 < s <= 64 and 0 < k <= 64 and 0 < length <= 1 << 16):
        raise CorruptArchiveError("index: entropy table dimensions out of range")
    offsets, lengths, modes = cur.ints(c), cur.ints(c), cur.ints(c)
    spatial = cur.ints(c * (s - 1)).reshape(c, s - 1)
    channel = cur.ints(c * (k - 1)).reshape(c, k - 1)
    if flag == 0:
        freqs = cur.ints(c * length).reshape(c, length)
        if (freqs < 0).any() or (freqs >= 1 << 32).any():
            raise CorruptArchiveError("index: frequency out of range")
        table = FrequencyTables(offsets.astype(np.int32), freqs.astype(np.uint32), lengths.astype(np.int32))
        table.validate()
        return ContextTables.from_channel_tables(table)
    slots = 1 if s == 1 else 1 + s
    counts = np.frombuffer(cur.take(c * slots * k * length), dtype=np.uint8).reshape(c, slots, k, length)
    return ContextTables.from_counts(offsets, lengths, modes, spatial, channel, counts)


def _section_payloads(index: Index) -> list[bytes]:
    entries, blocks = index.entries, index.blocks
    images = [e for e in entries if e.kind is EntryKind.IMAGE]
    files = [e for e in entries if e.kind is EntryKind.FILE]
    layout = put_varint(len(entries)) + put_varint(len(blocks)) + put_ints(np.asarray(index.entry_blocks) + 1)
    layout += put_ints([b.length for b in blocks]) + put_ints([b.latent_length + 1 for b in blocks])
    metadata = b"".join(
        put_ints(col)
        for col in (
            [int(e.kind) for e in entries], [e.mtime_ns for e in entries], [e.perm for e in entries],
            [e.size for e in entries], [e.width for e in images], [e.height for e in images],
            [int(e.mode) for e in images], [IMAGE_FORMATS.index(e.format) for e in images],
            [psnr_code(e.psnr) for e in images],
        )
    )  # fmt: skip
    metadata += put_bytes(json.dumps({str(i): e.note for i, e in enumerate(entries) if e.note}).encode())
    checksums = put_ints([b.checksum for b in blocks]) + put_ints([b.pixel_crc32 for b in blocks])
    checksums += b"".join(e.source_sha256 for e in files)
    docs = {**index.documents, "training": compact_training(index.documents.get("training", {}))}
    documents = b"".join(
        put_bytes(json.dumps(docs.get(name, {}), sort_keys=True, separators=(",", ":")).encode()) for name in DOCUMENTS
    )
    model = put_bytes(json.dumps(index.model, sort_keys=True, separators=(",", ":")).encode())
    model += _tables_bytes(index.tables)
    return [layout, put_names([e.path for e in entries]), metadata, checksums, documents, model]


def encode_index(index: Index, level: int = 19) -> bytes:
    """The bytes of ``/index`` (see module doc); fills ``index.section_bytes``."""
    plain = zstandard.ZstdCompressor(level=level, write_content_size=True)
    with_dict = zstandard.ZstdCompressor(level=level, write_content_size=True, dict_data=documents_dictionary())
    frames = [(with_dict if name == "documents" else plain).compress(p) for name, p in zip(SECTIONS, _section_payloads(index))]
    index.section_bytes = {name: len(f) for name, f in zip(SECTIONS, frames)}
    return bytes([len(frames)]) + b"".join(_U32.pack(len(f)) for f in frames) + b"".join(frames)


def _split(data: bytes) -> list[Cursor]:
    if not data or data[0] != len(SECTIONS) or len(data) < 1 + 4 * len(SECTIONS):
        raise CorruptArchiveError("index: bad section table")
    lengths = [_U32.unpack_from(data, 1 + 4 * i)[0] for i in range(len(SECTIONS))]
    pos = 1 + 4 * len(SECTIONS)
    if pos + sum(lengths) != len(data):
        raise CorruptArchiveError("index: section lengths do not add up")
    plain, with_dict = zstandard.ZstdDecompressor(), zstandard.ZstdDecompressor(dict_data=documents_dictionary())
    cursors = []
    for name, n in zip(SECTIONS, lengths):
        try:
            raw = (with_dict if name == "documents" else plain).decompress(data[pos : pos + n], max_output_size=MAX_SECTION_BYTES)
        except zstandard.ZstdError as exc:
            raise CorruptArchiveError(f"index section {name!r} does not decompress: {exc}") from None
        cursors.append(Cursor(raw, name))
        pos += n
    return cursors


def _json(cur: Cursor) -> dict:
    try:
        value = json.loads(cur.blob().decode())
    except (UnicodeDecodeError, ValueError):
        raise CorruptArchiveError(f"index section {cur.what!r}: a JSON document does not parse") from None
    if not isinstance(value, dict):
        raise CorruptArchiveError(f"index section {cur.what!r}: a JSON document is not an object")
    return value


def _layout(cur: Cursor, data_size: int) -> tuple[int, list[int], list[Block]]:
    n, b = cur.varint(), cur.varint()
    if n > MAX_ENTRIES or b > min(MAX_ENTRIES, data_size + 1):
        raise CorruptArchiveError("index: more entries or blocks than the archive can hold")
    entry_blocks = (cur.ints(n) - 1).tolist()
    lengths, latent = cur.ints(b), cur.ints(b) - 1
    if (lengths < 0).any() or int(lengths.sum()) != data_size or any(not -1 <= k < b for k in entry_blocks):
        raise CorruptArchiveError("index: block lengths or references do not match /data")
    if ((latent < -1) | (latent > lengths)).any():
        raise CorruptArchiveError("index: an image group's latent stream is longer than its block")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if b else np.zeros(0, np.int64)
    cur.done()
    return n, entry_blocks, [Block(int(o), int(s), 0, int(k)) for o, s, k in zip(offsets, lengths, latent)]


def decode_index(data: bytes, data_size: int) -> Index:
    """Parse ``/index`` (every length checked; ``data_size`` is the length of ``/data``)."""
    layout, names, meta, sums, docs, model = _split(data)
    n, entry_blocks, blocks = _layout(layout, data_size)
    paths = get_names(names, n)
    names.done()
    kinds, mtimes, perms, sizes = (meta.ints(n) for _ in range(4))
    try:
        kinds = [EntryKind(int(k)) for k in kinds]
    except ValueError:
        raise CorruptArchiveError("index: unknown entry kind") from None
    m = sum(k is EntryKind.IMAGE for k in kinds)
    widths, heights, modes, formats, psnrs = (meta.ints(m) for _ in range(5))
    notes = _json(meta)
    meta.done()
    crcs, pixel_crcs = sums.ints(len(blocks)), sums.ints(len(blocks))
    f = sum(k is EntryKind.FILE for k in kinds)
    hashes = sums.take(32 * f)
    sums.done()
    blocks = [
        Block(b.offset, b.length, int(crc) & 0xFFFFFFFF, b.latent_length, int(px) & 0xFFFFFFFF)
        for b, crc, px in zip(blocks, crcs, pixel_crcs)
    ]
    entries = _entries(paths, kinds, mtimes, perms, sizes, (widths, heights, modes, formats, psnrs), hashes, notes)
    for entry, k in zip(entries, entry_blocks):
        if k >= 0:
            entry.offset, entry.length, entry.checksum = blocks[k].offset, blocks[k].length, blocks[k].checksum
    documents = {name: _json(docs) for name in DOCUMENTS}
    documents["training"] = expand_training(documents["training"])
    docs.done()
    model_json, tables = _json(model), _read_tables(model)
    model.done()
    section_bytes = {name: _U32.unpack_from(data, 1 + 4 * i)[0] for i, name in enumerate(SECTIONS)}
    return Index(entries, entry_blocks, blocks, documents, model_json, tables, section_bytes)


def _entries(paths, kinds, mtimes, perms, sizes, image_cols, hashes, notes) -> list[Entry]:
    widths, heights, modes, formats, psnrs = image_cols
    entries, img, fil = [], 0, 0
    for i, kind in enumerate(kinds):
        entry = Entry(path=paths[i], kind=kind, mtime_ns=int(mtimes[i]), perm=int(perms[i]) & 0o7777,
                      size=int(sizes[i]), note=str(notes.get(str(i), "")))  # fmt: skip
        if kind is EntryKind.IMAGE:
            try:
                entry.mode, entry.format = ImageMode(int(modes[img])), IMAGE_FORMATS[int(formats[img])]
            except (ValueError, IndexError):
                raise CorruptArchiveError(f"index: entry {i} has an unknown mode or format") from None
            entry.width, entry.height, entry.psnr = int(widths[img]), int(heights[img]), psnr_value(int(psnrs[img]))
            img += 1
        elif kind is EntryKind.FILE:
            entry.source_sha256 = hashes[32 * fil : 32 * fil + 32]
            fil += 1
        entries.append(entry)
    return entries
