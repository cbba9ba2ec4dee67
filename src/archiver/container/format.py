"""Constants of the .nca format, version 3. ``docs/FORMAT.md`` is the prose spec of the same thing."""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "EntryKind",
    "ImageMode",
    "IMAGE_FORMATS",
    "FILE_SUFFIX",
    "RECORD_CHUNK_BYTES",
    "USERBLOCK_BYTES",
    "FILE_DIGEST_TAG",
    "SHARED_BLOBS",
    "text",
    "read_text",
]

#: Value of the root attribute ``magic``.
MAGIC = "archiver-nca"
#: Integer ``format_version`` this code writes. Version 2 added context entropy tables
#: (``/model/prior@model = "context"``); a version-1 reader would decode their bitstreams wrongly.
#: Version 3 replaced ``/entries`` by ``/index`` and ``/data`` (compact columns, image groups coded
#: as one stream, shared metadata blobs); a version-2 reader finds no entries in it.
FORMAT_VERSION = 3
#: Versions this code reads (version 1: per-channel tables only; version 2: one record per entry).
SUPPORTED_VERSIONS = (1, 2, 3)
#: Customary file name suffix.
FILE_SUFFIX = ".nca"
#: Bytes reserved before the HDF5 data (an HDF5 "user block"): they hold :data:`FILE_DIGEST_TAG`
#: followed by the hex SHA-256 of every byte after the user block, written after the file is complete.
USERBLOCK_BYTES = 512
FILE_DIGEST_TAG = b"archiver-nca file sha256 "
#: Image metadata blobs stored once per archive (version 3) and referenced by every image that has
#: the same bytes: the demo's six photos carried two copies of one 3 kB ICC profile.
SHARED_BLOBS = ("exif", "icc", "xmp")
#: Block size, in bytes, in which the writer copies records into the contiguous ``/entries/data``.
RECORD_CHUNK_BYTES = 1 << 18


class EntryKind(enum.IntEnum):
    """Values of ``/entries/kind``."""

    DIRECTORY = 0  #: a folder (kept so that empty folders come back); empty record
    IMAGE = 1  #: an image coded by the learned codec; record = latent bitstream + extras
    FILE = 2  #: any file stored byte-exact; record = one zstd frame of its bytes
    SYMLINK = 3  #: a symbolic link; record = the link target's bytes


class ImageMode(enum.IntEnum):
    """Values of ``/entries/mode``: the Pillow mode an image is extracted in (0 for non-images)."""

    NONE = 0
    RGB = 1
    L = 2
    RGBA = 3
    LA = 4
    P = 5


#: ``/entries/format`` holds an index into this tuple: the Pillow format name of the original image.
IMAGE_FORMATS: tuple[str, ...] = ("", "PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "AVIF", "PPM", "TGA")


def text(value: str) -> np.bytes_:
    """A string attribute as written since version 2: fixed-length, null-terminated UTF-8 bytes.

    Variable-length strings (version 1) live in HDF5's global heap, whose collections take at least
    4 KiB: measured 4.1 kB more per archive, a few percent of a small collection's archive.
    """
    return np.bytes_(value.encode("utf-8"))


def read_text(value) -> str:
    """A string attribute's value as ``str``, whether stored fixed-length (version 2) or not (version 1)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
