"""Reader of .nca archives: checks magic and format_version, then serves entries one record at a time.

Versions 1 and 2 keep one record per entry under ``/entries``; version 3 keeps ``/index`` and
``/data`` (:mod:`.index`), where an image's latent is one of its group's stream: the reader decodes
a group once (a small cache serves its other members) and hands out each member's latent.
"""

from __future__ import annotations

import json
import math
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter with HDF5)
import numpy as np
import zstandard

from ..codec.gain import check_gain
from ..codec.entropy import LatentCoder
from ..codec.geometry import latent_grid
from ..errors import CorruptArchiveError, FormatVersionError, NotAnArchiveError
from .digest import COLUMNS, check_file_digest, index_digest
from .entries import Entry
from .format import FORMAT_VERSION, IMAGE_FORMATS, MAGIC, SUPPORTED_VERSIONS, EntryKind, ImageMode, read_text
from .columns import Cursor
from .index import Block, Index, decode_index
from .probe import probe_damaged
from .reader_model import ModelReading
from .records import CODEC_BLOB, MAX_EXTRAS_BYTES, ImageRecord, decode_image_record, encode_image_record

__all__ = ["ArchiveReader"]

#: Largest image side, in pixels, a reader accepts (checked before anything is allocated).
MAX_SIDE = 1 << 16
#: Decoded image groups a reader keeps (version 3): extraction reads a group's members one after
#: the other, and the decoder's prefetch thread may be one group ahead.
GROUP_CACHE = 4


class ArchiveReader(ModelReading):
    """Open archive. Use as a context manager. Entries are read eagerly (metadata only, not records).

    A damaged archive (whole-file digest mismatch) is refused unless ``allow_damaged``; then, with
    ``probe`` (the default), a child process first reads all of it under a time and memory limit
    (:func:`~archiver.container.probe.probe_damaged`), so that damaged HDF5 metadata ends in
    :class:`CorruptArchiveError` rather than a hang.
    """

    def __init__(self, path: Path, allow_damaged: bool = False, probe: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotAnArchiveError(f"{self.path}: no such archive file")
        # The whole-file digest is checked before HDF5 parses anything: a damaged HDF5 structure can
        # make the library hang or allocate without bound (seen in fuzzing), so a damaged archive is
        # only opened when the caller asks to salvage it (extract --keep-going).
        self.damaged = check_file_digest(self.path) is False
        if self.damaged and not allow_damaged:
            raise CorruptArchiveError(
                f"{self.path}: file checksum mismatch: the archive is damaged "
                "(extract --keep-going salvages the intact entries)"
            )
        if self.damaged and probe:
            # Salvage: make sure HDF5 can get through the damaged structure before trusting it here.
            probe_damaged(self.path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError:
            raise NotAnArchiveError(f"{self.path} is not an .nca archive (not an HDF5 file)") from None
        self._index: Index | None = None
        self._coder: LatentCoder | None = None
        self._codec = None  # the codec's read side, made on first use
        self._groups: OrderedDict[int, list[tuple[np.ndarray, ImageRecord]]] = OrderedDict()
        self._lock = threading.RLock()
        try:
            self._check_header()
            self._check_digest()
            if self.format_version >= 3:
                self._open_index()
            else:
                self.config: dict = self._json_attr("config")
                self.training: dict = self._json_attr("training")
                self.summary: dict = self._json_attr("summary")
                self.entries: list[Entry] = self._read_entries()
        except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
            # h5py reports damaged structures as OSError/KeyError; never let them escape raw.
            self._file.close()
            raise CorruptArchiveError(f"{self.path}: damaged archive structure ({type(exc).__name__}: {exc})") from None
        except Exception:
            self._file.close()
            raise

    # -- header ---------------------------------------------------------------------------------
    def _check_header(self) -> None:
        attrs = self._file.attrs
        magic = attrs.get("magic")
        if isinstance(magic, bytes):
            magic = magic.decode(errors="replace")
        if magic != MAGIC:
            raise NotAnArchiveError(
                f"{self.path} is not an .nca archive (magic {magic!r}, expected {MAGIC!r})"
            )
        version = attrs.get("format_version")
        if version is None or not np.issubdtype(np.asarray(version).dtype, np.integer):
            raise CorruptArchiveError(f"{self.path}: root attribute format_version is missing or not an integer")
        self.format_version = int(version)
        if self.format_version not in SUPPORTED_VERSIONS:
            raise FormatVersionError(
                f"{self.path} has format_version {self.format_version}; this archiver "
                f"reads version(s) {', '.join(map(str, SUPPORTED_VERSIONS))} (writes {FORMAT_VERSION})"
            )

    def _check_digest(self) -> None:
        stored = self._file.attrs.get("index_sha256")
        if isinstance(stored, bytes):
            stored = stored.decode(errors="replace")
        if stored != index_digest(self._file):
            raise CorruptArchiveError(
                f"{self.path}: index checksum mismatch (names, sizes, offsets or model tables are damaged)"
            )

    def _json_attr(self, name: str) -> dict:
        raw = self._file.attrs.get(name)
        if raw is None:
            raise CorruptArchiveError(f"{self.path}: root attribute {name!r} is missing")
        try:
            return json.loads(raw)
        except ValueError:
            raise CorruptArchiveError(f"{self.path}: root attribute {name!r} is not valid JSON") from None

    def _open_index(self) -> None:
        """Version 3: parse ``/index`` (already covered by the digest) and check how it fits together."""
        try:
            raw = self._file["index"][()].tobytes()
            data_size = self._file["data"].shape[0]
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptArchiveError(f"{self.path}: /index or /data is damaged or missing ({exc})") from None
        try:
            index = decode_index(raw, data_size)
        except CorruptArchiveError as exc:
            raise CorruptArchiveError(f"{self.path}: {exc}") from None
        self._index = index
        self.config, self.training, self.summary = (index.documents[k] for k in ("config", "training", "summary"))
        self.entries = index.entries
        self._members: dict[int, list[Entry]] = {}
        for entry, k in zip(index.entries, index.entry_blocks):
            if entry.width > MAX_SIDE or entry.height > MAX_SIDE:
                raise CorruptArchiveError(f"{self.path}: entry {entry.display!r} declares an image over {MAX_SIDE} px a side")
            is_image, is_group = entry.kind is EntryKind.IMAGE, k >= 0 and index.blocks[k].is_group
            if is_image != is_group or (k < 0 and entry.kind not in (EntryKind.DIRECTORY,)):
                raise CorruptArchiveError(f"{self.path}: entry {entry.display!r} points at the wrong kind of block")
            entry.block = k
            if is_image:
                members = self._members.setdefault(k, [])
                entry.member = len(members)
                members.append(entry)
            elif k >= 0 and k in self._members:
                raise CorruptArchiveError(f"{self.path}: two entries share block {k}")
            elif k >= 0:
                self._members[k] = [entry]
        for k, members in self._members.items():
            if index.blocks[k].is_group and len({self.latent_shape(e) for e in members}) != 1:
                raise CorruptArchiveError(f"{self.path}: image group {k} mixes latent shapes")

    def codec_attr(self) -> str | None:
        """The JSON codec description (:mod:`archiver.codecs`), or None: the legacy codec (:data:`archiver.codecs.LEGACY_CODEC`) of
        ``config.model`` (every archive before format version 3, and version 3 archives of it)."""
        doc = self._index.documents.get("codec") if self._index is not None else None
        return json.dumps(doc) if doc else None

    @property
    def codec(self):
        """The read side of the archive's image codec (:func:`archiver.codecs.read_side`), made once."""
        if self._codec is None:
            from ..codecs import read_side

            self._codec = read_side(self)
        return self._codec

    def latent_shape(self, entry: Entry) -> tuple[int, int]:
        """(rows, columns) of an image entry's latent, from its size and the codec's stride and
        smallest coded size (the decoder buckets batches by it)."""
        return latent_grid(entry.height, entry.width, self.codec.min_size, self.codec.stride)

    @property
    def blocks(self) -> list[Block]:
        """Version 3: the blocks of ``/data`` (empty for older versions)."""
        return self._index.blocks if self._index is not None else []

    def group_members(self, entry: Entry) -> list[Entry]:
        """Version 3: the image entries coded in the same group as ``entry`` (in stream order); older
        versions: ``[entry]``."""
        if self._index is None or entry.block < 0:
            return [entry]
        return list(self._members[entry.block])

    def _block_bytes(self, block: int, entry: Entry) -> bytes:
        b = self._index.blocks[block]  # type: ignore[union-attr]
        try:
            data = bytes(self._file["data"][b.offset : b.offset + b.length].tobytes())
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CorruptArchiveError(f"{self.path}: entry {entry.name!r} cannot be read ({exc})") from None
        if zlib.crc32(data) != b.checksum:
            group = f" (image group {block} of {len(self._members[block])} images, all lost with it)" if b.is_group else ""
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in entry {entry.name!r}{group}")
        return data

    def _latent_coder(self) -> LatentCoder:
        with self._lock:
            if self._coder is None:
                self._coder = self.codec.coder()
            return self._coder

    def _group(self, entry: Entry) -> list[tuple[np.ndarray, ImageRecord]]:
        """Every member's (latent, extras) of ``entry``'s group, decoded once and cached."""
        return self._groups_of([entry])[entry.block]

    def _groups_of(self, entries: list[Entry]) -> dict[int, list[tuple[np.ndarray, ImageRecord]]]:
        """The decoded groups of ``entries`` by block. Groups not cached are read (checksums first)
        and their latents entropy-decoded in one pass when the codec's coder can decode several
        streams side by side (``decode_streams``); if that pass fails, each group is decoded alone so
        that the error names its group. The last :data:`GROUP_CACHE` decoded are kept."""
        with self._lock:
            found: dict[int, list[tuple[np.ndarray, ImageRecord]]] = {}
            todo: dict[int, Entry] = {}
            for entry in entries:
                if entry.block in self._groups:
                    self._groups.move_to_end(entry.block)
                    found[entry.block] = self._groups[entry.block]
                else:
                    todo.setdefault(entry.block, entry)
            if len(todo) > 1 and hasattr(self._latent_coder(), "decode_streams"):
                try:
                    found.update(self._decode_together(list(todo.values())))
                    todo = {}
                except CorruptArchiveError:
                    pass  # decoded alone below: the error names its group
            for block, entry in todo.items():
                found[block] = self._decode_together([entry])[block]
            for block in found:
                self._groups[block] = found[block]
                self._groups.move_to_end(block)
            while len(self._groups) > GROUP_CACHE:
                self._groups.popitem(last=False)
            return found

    def _decode_together(self, firsts: list[Entry]) -> dict[int, list[tuple[np.ndarray, ImageRecord]]]:
        """Decode the groups of ``firsts`` (one entry of each): one coder pass for several."""
        streams, parts = [], []
        for entry in firsts:
            data = self._block_bytes(entry.block, entry)
            members = self._members[entry.block]
            b = self._index.blocks[entry.block]  # type: ignore[union-attr]
            streams.append((data[: b.latent_length], *self.latent_shape(members[0]), len(members)))
            parts.append(data[b.latent_length :])
        coder = self._latent_coder()
        out = {}
        try:
            if len(firsts) == 1:
                decoded = [coder.decode_many(*streams[0])]
            else:
                decoded = coder.decode_streams(streams)  # type: ignore[attr-defined]
            for entry, latents, extras in zip(firsts, decoded, parts):
                out[entry.block] = list(zip(latents, self._group_extras(extras, len(latents), entry)))
        except CorruptArchiveError as exc:
            if len(firsts) > 1:
                raise
            entry = firsts[0]
            raise CorruptArchiveError(f"{self.path}: image group {entry.block} (entry {entry.name!r}): {exc}") from None
        return out

    def _group_extras(self, data: bytes, count: int, entry: Entry) -> list[ImageRecord]:
        """Parse a group's extras frame (see docs/FORMAT.md); shared blobs are read from their blocks."""
        if not data:
            return [ImageRecord(b"") for _ in range(count)]
        try:
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_EXTRAS_BYTES)
        except zstandard.ZstdError as exc:
            raise CorruptArchiveError(f"extras do not decompress: {exc}") from None
        cur, out = Cursor(raw, "group extras"), []
        for _ in range(count):
            n = cur.varint()
            try:
                header = json.loads(cur.take(n).decode()) if n else {}
                blobs = {str(k): cur.take(int(v)) for k, v in sorted(header.get("blobs", {}).items())}
                shared = {str(k): int(v) for k, v in header.get("shared", {}).items()}
            except (UnicodeDecodeError, ValueError, AttributeError, TypeError):
                raise CorruptArchiveError("extras header does not parse") from None
            for name, block in shared.items():
                blobs[name] = self._shared_blob(block, entry)
            codec = blobs.pop(CODEC_BLOB, b"")
            out.append(ImageRecord(b"", header.get("info", {}), blobs, check_gain(header.get("gain", 0)), codec))
        cur.done()
        return out

    def _shared_blob(self, block: int, entry: Entry) -> bytes:
        blocks = self._index.blocks  # type: ignore[union-attr]
        if not 0 <= block < len(blocks) or blocks[block].is_group or block in self._members or block in self.model_blocks().values():
            raise CorruptArchiveError(f"a metadata blob reference ({block}) points at no blob")
        try:
            return zstandard.ZstdDecompressor().decompress(self._block_bytes(block, entry), max_output_size=MAX_EXTRAS_BYTES)
        except zstandard.ZstdError as exc:
            raise CorruptArchiveError(f"metadata blob {block} does not decompress: {exc}") from None

    def read_image(self, entry: Entry, verify: bool = True) -> tuple[np.ndarray, ImageRecord]:
        """An image entry's integer latent (C, h, w) and its extras (``record.latent`` is empty)."""
        if self._index is None:
            record = decode_image_record(self.read_record(entry, verify))
            h, w = self.latent_shape(entry)
            try:
                latent = self._latent_coder().decode(record.latent, h, w)
            except CorruptArchiveError as exc:
                raise CorruptArchiveError(f"{self.path}: entry {entry.name!r}: {exc}") from None
            return latent, ImageRecord(b"", record.info, record.blobs)
        latent, record = self._group(entry)[entry.member]
        return latent, record

    def read_images(self, entries: list[Entry]) -> list[tuple[np.ndarray, ImageRecord]]:
        """:meth:`read_image` of several entries; in version 3 their groups are entropy-decoded
        together (see :meth:`_groups_of`)."""
        if self._index is None:
            return [self.read_image(entry) for entry in entries]
        groups = self._groups_of(entries)
        return [groups[entry.block][entry.member] for entry in entries]

    def _read_entries(self) -> list[Entry]:
        try:
            group = self._file["entries"]
            cols = {name: group[name][()] for name in COLUMNS}
            count = int(group.attrs["count"])
            notes = json.loads(group.attrs.get("notes", "{}"))
            data_size = group["data"].shape[0]
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptArchiveError(f"{self.path}: /entries is damaged or incomplete ({exc})") from None
        paths = bytes(cols.pop("path").tobytes()).split(b"\0")
        if paths and paths[-1] == b"":
            paths.pop()
        if len(paths) != count or any(len(col) != count for col in cols.values()):
            raise CorruptArchiveError(f"{self.path}: /entries columns disagree on the number of entries")
        entries = []
        for i in range(count):
            offset, length = int(cols["offset"][i]), int(cols["length"][i])
            if offset + length > data_size:
                raise CorruptArchiveError(f"{self.path}: entry {i} points past the end of /entries/data")
            if int(cols["width"][i]) > MAX_SIDE or int(cols["height"][i]) > MAX_SIDE:
                raise CorruptArchiveError(f"{self.path}: entry {i} declares an image over {MAX_SIDE} px a side")
            try:
                kind = EntryKind(int(cols["kind"][i]))
                mode = ImageMode(int(cols["mode"][i]))
                fmt = IMAGE_FORMATS[int(cols["format"][i])]
            except (ValueError, IndexError):
                raise CorruptArchiveError(f"{self.path}: entry {i} has an unknown kind, mode or format") from None
            psnr = float(cols["psnr"][i])
            entries.append(
                Entry(
                    path=paths[i], kind=kind, mtime_ns=int(cols["mtime_ns"][i]), perm=int(cols["perm"][i]),
                    size=int(cols["size"][i]), source_sha256=bytes(cols["source_sha256"][i]),
                    width=int(cols["width"][i]), height=int(cols["height"][i]), mode=mode, format=fmt,
                    psnr=psnr if not math.isnan(psnr) else math.nan, pixel_crc32=int(cols["pixel_crc32"][i]),
                    note=notes.get(str(i), ""),
                    offset=offset, length=length, checksum=int(cols["checksum"][i]),
                )
            )  # fmt: skip
        return entries

    # -- content --------------------------------------------------------------------------------
    def read_record(self, entry: Entry, verify: bool = True) -> bytes:
        """The record bytes of ``entry``; with ``verify`` its CRC-32 is checked.

        In version 3 an image has no record of its own: it is given as a version-2 image record (its
        latent range-coded alone with the same tables, then its extras), so that callers of older
        versions' records keep working; :meth:`read_image` is the direct way."""
        if self._index is not None:
            if entry.kind is EntryKind.IMAGE:
                latent, record = self.read_image(entry)
                alone = ImageRecord(self._latent_coder().encode(latent), record.info, record.blobs)
                return encode_image_record(alone, level=1)
            return self._block_bytes(entry.block, entry) if entry.block >= 0 else b""
        try:
            data = bytes(self._file["entries/data"][entry.offset : entry.offset + entry.length].tobytes())
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CorruptArchiveError(f"{self.path}: entry {entry.name!r} cannot be read ({exc})") from None
        if verify and zlib.crc32(data) != entry.checksum:
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in entry {entry.name!r}")
        return data

    def data_offset(self) -> int:
        """File offset of the dataset that holds the records (``/entries/data`` before version 3,
        ``/data`` since): ``entry.offset`` counts from there."""
        return int(self._file["data" if self._index is not None else "entries/data"].id.get_offset())

    def stored_bytes(self, name: str) -> int:
        """Bytes stored for a dataset or for all datasets under a group (after HDF5 filters); in
        version 3 ``model`` and ``model/<name>`` are the model blobs' blocks."""
        if self._index is not None and (name == "model" or name.startswith("model/")):
            blocks = self.model_blocks()
            chosen = blocks.values() if name == "model" else [blocks[name[6:]]] if name[6:] in blocks else []
            return sum(self._index.blocks[k].length for k in chosen)
        obj = self._file[name]
        if isinstance(obj, h5py.Dataset):
            return int(obj.id.get_storage_size())
        total = 0

        def visit(_: str, item) -> None:
            nonlocal total
            if isinstance(item, h5py.Dataset):
                total += int(item.id.get_storage_size())

        obj.visititems(visit)
        return total

    @property
    def created(self) -> dict[str, str]:
        """``archiver_version`` and ``created_utc`` of the writing software (informational): root
        attributes before version 3, the index's ``created`` document since."""
        if self._index is not None:
            return {k: str(v) for k, v in self._index.documents.get("created", {}).items()}
        return {k: read_text(self._file.attrs.get(k, "")) for k in ("archiver_version", "created_utc")}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
