"""One archive entry: the columns of ``/entries`` for one file, folder or link."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .format import EntryKind, ImageMode

__all__ = ["Entry"]


@dataclass
class Entry:
    """Metadata of one entry. ``path`` is the relative POSIX path as raw bytes (names need not be UTF-8).

    ``offset``, ``length`` and ``checksum`` (CRC-32 of the record bytes) locate and protect the record
    in ``/entries/data`` (version 3: those of its block in ``/data``; an image's block is its group,
    ``member`` its place in the group); the writer fills them in. ``source_sha256`` is the SHA-256 of the original
    file for byte-exact files (all zero for images, whose bytes are not kept).
    """

    path: bytes
    kind: EntryKind
    mtime_ns: int = 0
    perm: int = 0o644
    size: int = 0
    source_sha256: bytes = b"\0" * 32
    width: int = 0
    height: int = 0
    mode: ImageMode = ImageMode.NONE
    format: str = ""
    psnr: float = math.nan
    pixel_crc32: int = 0
    note: str = ""
    offset: int = 0
    length: int = 0
    checksum: int = 0
    block: int = -1  #: version 3: the entry's block in ``/data`` (-1: none, or an older version)
    member: int = -1  #: version 3: an image's place in its group

    @property
    def name(self) -> str:
        """The path as text for display and matching (undecodable bytes kept via surrogateescape)."""
        return os.fsdecode(self.path)

    @property
    def display(self) -> str:
        """The path for printing: bytes that are not UTF-8 shown as ``\\xNN`` (always encodable)."""
        return self.path.decode("utf-8", "backslashreplace")

    @property
    def pixels(self) -> int:
        return self.width * self.height
