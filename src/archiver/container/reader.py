"""Reader of .nca archives: checks magic and format_version, then serves entries one record at a time."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter with HDF5)
import numpy as np
import zstandard

from ..codec.context import ContextTables
from ..codec.tables import PRECISION, FrequencyTables
from ..codec.weights import unpack_arrays
from ..errors import CorruptArchiveError, FormatVersionError, NotAnArchiveError
from .digest import COLUMNS, check_file_digest, index_digest
from .entries import Entry
from .format import FORMAT_VERSION, IMAGE_FORMATS, MAGIC, SUPPORTED_VERSIONS, EntryKind, ImageMode, read_text
from .probe import probe_damaged

__all__ = ["ArchiveReader"]

#: Largest image side, in pixels, a reader accepts (checked before anything is allocated).
MAX_SIDE = 1 << 16


class ArchiveReader:
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
        try:
            self._check_header()
            self._check_digest()
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
        """The record bytes of ``entry``; with ``verify`` its CRC-32 is checked."""
        try:
            data = bytes(self._file["entries/data"][entry.offset : entry.offset + entry.length].tobytes())
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CorruptArchiveError(f"{self.path}: entry {entry.name!r} cannot be read ({exc})") from None
        if verify and zlib.crc32(data) != entry.checksum:
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in entry {entry.name!r}")
        return data

    def model_arrays(self, name: str = "decoder") -> dict[str, np.ndarray]:
        """The int8 arrays of ``/model/<name>`` (decoder, denoiser or encoder), after checking the blob's SHA-256."""
        try:
            ds = self._file[f"model/{name}"]
            blob = ds[()].tobytes()
            manifest = json.loads(ds.attrs["manifest"])
            digest = read_text(ds.attrs["sha256"])
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptArchiveError(f"{self.path}: /model/{name} is damaged or missing ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in the {name} weights")
        return unpack_arrays(blob, manifest)

    @property
    def has_denoiser(self) -> bool:
        """True if a post-filter was kept; the training summary and the datasets must agree."""
        kept = bool(self.training.get("denoiser", {}).get("kept", False))
        if kept != ("model/denoiser" in self._file and "model/denoiser_onnx" in self._file):
            raise CorruptArchiveError(f"{self.path}: the denoiser datasets disagree with the training summary")
        return kept

    @property
    def min_size(self) -> int:
        """Training crop side in pixels (``training.crop``): smaller images were coded padded up to it."""
        return int(self.training.get("crop", 0))

    @property
    def has_encoder(self) -> bool:
        """True if the archive was packed ``appendable``; the config and the dataset must agree."""
        kept = bool(self.config.get("appendable", False))
        if kept != ("model/encoder" in self._file):
            raise CorruptArchiveError(f"{self.path}: the encoder dataset disagrees with the config (appendable={kept})")
        return kept

    def onnx_graph(self, name: str = "decoder_onnx") -> bytes:
        """An ONNX graph without weights (``/model/decoder_onnx`` or ``/model/denoiser_onnx``); for
        archives written before the decoder's was stored, it is rebuilt from ``config.model``."""
        if name == "decoder_onnx" and "model/decoder_onnx" not in self._file:
            from ..config import PackConfig
            from ..runtime.graph import build_graph, graph_only

            cfg = PackConfig.from_dict(self.config)
            return graph_only(build_graph(cfg.model, int8=cfg.int8_weights))
        ds = self._file[f"model/{name}"]
        blob = ds[()].tobytes()
        if hashlib.sha256(blob).hexdigest() != read_text(ds.attrs.get("sha256", "")):
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in /model/{name}")
        try:
            return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 26)
        except zstandard.ZstdError as exc:
            raise CorruptArchiveError(f"{self.path}: the decoder's ONNX graph does not decompress: {exc}") from None

    def tables(self) -> ContextTables:
        """The integer entropy tables (validated): context tables, or a version-1 archive's
        per-channel tables as one context per channel."""
        try:
            group = self._file["model/prior"]
            if int(group.attrs["precision"]) != PRECISION:
                raise CorruptArchiveError(f"{self.path}: entropy tables have precision {group.attrs['precision']}")
            model = read_text(group.attrs.get("model", "channel"))
            if model == "channel":
                channel = FrequencyTables(group["offsets"][()], group["freqs"][()], group["lengths"][()])
                channel.validate()
                tables = ContextTables.from_channel_tables(channel)
            elif model == "context" and self.format_version >= 2:
                tables = ContextTables.from_counts(
                    group["offsets"][()], group["lengths"][()], group["modes"][()],
                    group["spatial_thresholds"][()], group["channel_thresholds"][()], group["counts"][()],
                )  # fmt: skip
            else:
                raise CorruptArchiveError(
                    f"{self.path}: /model/prior has entropy model {model!r}, which format version "
                    f"{self.format_version} does not define (this archiver reads 'channel' and 'context')"
                )
        except (KeyError, ValueError, OSError, IndexError) as exc:
            raise CorruptArchiveError(f"{self.path}: /model/prior is damaged or missing ({exc})") from None
        tables.validate()
        return tables

    def stored_bytes(self, name: str) -> int:
        """Bytes stored for a dataset or for all datasets under a group (after HDF5 filters)."""
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

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
