"""Byte layout of one image record (format versions 1 and 2): the latent bitstream and the optional
zstd-compressed extras. Version 3 codes images in groups (``docs/FORMAT.md``); its reader still hands
out this record for one image (``ArchiveReader.read_record``) to callers written against version 2.

    u32 LE  latent_len | latent_len bytes of range-coded latent | u32 LE extras_len | extras

``extras`` (absent when ``extras_len`` is 0) is one zstd frame holding ``u32 LE json_len``, a UTF-8
JSON object ``{"info": {...}, "blobs": {name: length, ...}}`` and then the named blobs in that order
(``alpha``: raw uint8 plane H×W; ``exif``, ``icc``, ``xmp``: metadata bytes; ``palette``: 768 RGB bytes).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import zstandard

from ..errors import CorruptArchiveError

__all__ = ["ImageRecord", "encode_image_record", "decode_image_record", "MAX_EXTRAS_BYTES", "CODEC_BLOB"]

_U32 = struct.Struct("<I")
#: Upper bound on the decompressed extras of one record, in bytes (alpha of a 256-megapixel image).
MAX_EXTRAS_BYTES = 1 << 28
#: Name of the inline blob of a version-3 image's extras that holds its per-image codec data.
CODEC_BLOB = "codec"


@dataclass
class ImageRecord:
    """Decoded content of an image record."""

    latent: bytes
    info: dict = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: the image's quantization gain code (version 3 group extras only, :mod:`archiver.codec.gain`)
    gain: int = 0
    #: the image's own data for its codec (version 3 group extras only: the blob named
    #: :data:`CODEC_BLOB`; what it means is the codec's alone); empty when none
    codec: bytes = b""


def encode_image_record(record: ImageRecord, level: int = 19) -> bytes:
    """Serialize ``record`` (see module doc)."""
    extras = b""
    if record.info or record.blobs:
        header = json.dumps(
            {"info": record.info, "blobs": {k: len(v) for k, v in record.blobs.items()}},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        payload = _U32.pack(len(header)) + header + b"".join(record.blobs[k] for k in sorted(record.blobs))
        extras = zstandard.ZstdCompressor(level=level).compress(payload)
    return _U32.pack(len(record.latent)) + record.latent + _U32.pack(len(extras)) + extras


def decode_image_record(data: bytes) -> ImageRecord:
    """Parse bytes from :func:`encode_image_record`; every length is checked before it is used."""
    try:
        (n_latent,) = _U32.unpack_from(data, 0)
        latent = data[4 : 4 + n_latent]
        (n_extras,) = _U32.unpack_from(data, 4 + n_latent)
    except struct.error:
        raise CorruptArchiveError("image record is truncated") from None
    end = 8 + n_latent + n_extras
    if len(latent) != n_latent or end != len(data):
        raise CorruptArchiveError("image record lengths do not add up")
    if n_extras == 0:
        return ImageRecord(latent)
    try:
        payload = zstandard.ZstdDecompressor().decompress(data[8 + n_latent :], max_output_size=MAX_EXTRAS_BYTES)
        (n_header,) = _U32.unpack_from(payload, 0)
        header = json.loads(payload[4 : 4 + n_header].decode())
    except (zstandard.ZstdError, struct.error, ValueError) as exc:
        raise CorruptArchiveError(f"image record extras are damaged: {exc}") from None
    blobs: dict[str, bytes] = {}
    pos = 4 + n_header
    for name in sorted(header.get("blobs", {})):
        size = int(header["blobs"][name])
        blobs[name] = payload[pos : pos + size]
        pos += size
    if pos != len(payload):
        raise CorruptArchiveError("image record extras lengths do not add up")
    return ImageRecord(latent, header.get("info", {}), blobs)
