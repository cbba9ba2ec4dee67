"""The model side of :class:`~archiver.container.reader.ArchiveReader`: model blobs (SHA-256
checked), their int8 arrays, ONNX graphs and the integer entropy tables, in every format
version (``/model/<name>`` datasets before version 3, blocks of ``/data`` named by the index since).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import zstandard

from ..codec.context import ContextTables
from ..codec.tables import PRECISION, FrequencyTables
from ..codec.weights import unpack_arrays
from ..errors import CorruptArchiveError
from .format import read_text

__all__ = ["ModelReading"]


class ModelReading:
    """Mixin of :class:`~archiver.container.reader.ArchiveReader`: it provides ``path``, ``_file``
    (the open HDF5 file), ``_index`` (version 3, else None), ``_members`` (blocks that hold entries),
    ``config``, ``training``, ``format_version`` and ``codec_attr()``."""

    def has_model(self, name: str) -> bool:
        """Whether the archive holds model blob ``/model/<name>``."""
        return name in self._index.model if self._index is not None else f"model/{name}" in self._file

    def _model_blob(self, name: str) -> tuple[bytes, dict]:
        """The bytes of model blob ``name`` (``/model/<name>``, or in version 3 its block of
        ``/data``) and its attributes (manifest, sha256, opset), the SHA-256 checked."""
        try:
            if self._index is not None:
                attrs = self._index.model[name]
                b = self._index.blocks[int(attrs["block"])]
                if int(attrs["block"]) in self._members or b.is_group:
                    raise CorruptArchiveError(f"{self.path}: model blob {name!r} points at an entry's block")
                blob = bytes(self._file["data"][b.offset : b.offset + b.length].tobytes())
            else:
                ds = self._file[f"model/{name}"]
                blob, attrs = ds[()].tobytes(), dict(ds.attrs)
            digest = read_text(attrs["sha256"])
        except (KeyError, ValueError, OSError, TypeError, IndexError) as exc:
            raise CorruptArchiveError(f"{self.path}: /model/{name} is damaged or missing ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != digest:
            what = f"the {name} weights" if "onnx" not in name else f"/model/{name}"
            raise CorruptArchiveError(f"{self.path}: checksum mismatch in {what}")
        return blob, attrs

    def model_arrays(self, name: str = "decoder") -> dict[str, np.ndarray]:
        """The int8 arrays of model blob ``name`` (decoder, denoiser or encoder), after checking its SHA-256."""
        blob, attrs = self._model_blob(name)
        try:
            manifest = attrs["manifest"] if self._index is not None else json.loads(attrs["manifest"])
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptArchiveError(f"{self.path}: /model/{name} is damaged or missing ({exc})") from None
        return unpack_arrays(blob, manifest)

    @property
    def has_denoiser(self) -> bool:
        """True if a post-filter was kept; the training summary and the datasets must agree."""
        kept = bool(self.training.get("denoiser", {}).get("kept", False))
        if kept != (self.has_model("denoiser") and self.has_model("denoiser_onnx")):
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
        if kept != self.has_model("encoder"):
            raise CorruptArchiveError(f"{self.path}: the encoder dataset disagrees with the config (appendable={kept})")
        return kept

    def onnx_graph(self, name: str = "decoder_onnx") -> bytes:
        """An ONNX graph without weights (``/model/decoder_onnx`` or ``/model/denoiser_onnx``). Archives
        written before the decoder's graph was stored have none: their codec's read side rebuilds it
        (``reader.codec.graph()``), so ask that for the decoder's graph."""
        if name == "decoder_onnx" and not self.has_model("decoder_onnx"):
            raise CorruptArchiveError(f"{self.path}: /model/decoder_onnx is missing")
        blob, _ = self._model_blob(name)
        try:
            return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 26)
        except zstandard.ZstdError as exc:
            raise CorruptArchiveError(f"{self.path}: the decoder's ONNX graph does not decompress: {exc}") from None

    def tables(self) -> ContextTables:
        """The integer entropy tables (validated): context tables, or a version-1 archive's
        per-channel tables as one context per channel."""
        if self._index is not None:
            if self._index.tables is None:
                raise CorruptArchiveError(f"{self.path}: the archive holds no entropy tables")
            self._index.tables.validate()
            return self._index.tables
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

    def model_blocks(self) -> dict[str, int]:
        """Version 3: the ``/data`` block of each model blob, by name (empty for older versions)."""
        if self._index is None:
            return {}
        return {name: int(attrs["block"]) for name, attrs in self._index.model.items()}
