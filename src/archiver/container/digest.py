"""SHA-256 over everything in an archive except the records: attributes, entry columns, model tables.

Records carry their own CRC-32 and the weight blobs their own SHA-256; this digest (root attribute
``index_sha256``) protects the rest (in version 3 chiefly the ``/index`` dataset), so that a flipped byte in a width, an offset or a frequency
table is detected when the archive is opened, not trusted.
"""

from __future__ import annotations

import hashlib

import h5py

from .format import FILE_DIGEST_TAG, USERBLOCK_BYTES
import numpy as np

__all__ = ["index_digest", "file_digest", "write_file_digest", "check_file_digest", "ROOT_ATTRS", "COLUMNS"]

#: Root attributes covered by the digest, in digest order.
ROOT_ATTRS = ("magic", "format_version", "config", "training", "summary")
#: Datasets of /entries covered by the digest (all but ``data``), in digest order.
COLUMNS = (
    "path", "kind", "mtime_ns", "perm", "size", "offset", "length", "checksum",
    "source_sha256", "width", "height", "mode", "format", "psnr", "pixel_crc32",
)  # fmt: skip
_MODEL = (
    ("model/decoder", ("manifest", "sha256")),
    ("model/decoder_onnx", ("opset", "sha256")),
    ("model/prior", ("precision",)),
)
_OPTIONAL = (
    ("model/denoiser", ("manifest", "sha256")),
    ("model/denoiser_onnx", ("opset", "sha256")),
    ("model/encoder", ("manifest", "sha256")),
)


def _attr_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return np.asarray(value).astype(np.asarray(value).dtype.newbyteorder("<")).tobytes()


def index_digest(f: h5py.File) -> str:
    """Hex SHA-256 of the covered attributes and datasets of an open archive (missing ones count as
    absent, so removing one changes the digest too)."""
    h = hashlib.sha256()

    def feed(tag: str, data: bytes | None) -> None:
        h.update(tag.encode() + b"\0")
        if data is None:
            h.update(b"\xff")
        else:
            h.update(len(data).to_bytes(8, "little") + data)

    for name in ROOT_ATTRS:
        feed("/@" + name, _attr_bytes(f.attrs[name]) if name in f.attrs else None)
    entries = f.get("entries")
    for name in ("count", "notes"):
        feed("/entries@" + name, _attr_bytes(entries.attrs[name]) if entries is not None and name in entries.attrs else None)
    for name in COLUMNS:
        ds = entries.get(name) if entries is not None else None
        feed("/entries/" + name, None if ds is None else np.ascontiguousarray(ds[()]).astype(ds.dtype.newbyteorder("<")).tobytes())
    for path, attrs in _MODEL:
        obj = f.get(path)
        for a in attrs:
            feed(f"/{path}@{a}", _attr_bytes(obj.attrs[a]) if obj is not None and a in obj.attrs else None)
    # Optional items are fed only when present, so that archives without them keep their digest;
    # the training summary and the config (covered above) say whether a denoiser and an encoder were
    # kept, and the reader checks that the datasets agree.
    for path, attrs in _OPTIONAL:
        obj = f.get(path)
        if obj is not None:
            for a in attrs:
                feed(f"/{path}@{a}", _attr_bytes(obj.attrs[a]) if a in obj.attrs else None)
    index = f.get("index")
    if index is not None:  # version 3: the index holds the entries, documents, model attributes and tables
        feed("/index", index[()].tobytes())
    prior = f.get("model/prior")
    names = ("offsets", "lengths", "freqs")
    if prior is not None and "model" in prior.attrs:  # version 2: the entropy model and its datasets
        feed("/model/prior@model", _attr_bytes(prior.attrs["model"]))
        names = ("offsets", "lengths", "freqs", "modes", "spatial_thresholds", "channel_thresholds", "counts")
    for name in names:
        ds = prior.get(name) if prior is not None else None
        feed("/model/prior/" + name, None if ds is None else np.ascontiguousarray(ds[()]).astype(ds.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def file_digest(path) -> str:
    """Hex SHA-256 of every byte of the file after the user block."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(USERBLOCK_BYTES)
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _userblock(digest: str) -> bytes:
    return (FILE_DIGEST_TAG + digest.encode() + b"\n").ljust(USERBLOCK_BYTES, b"\0")


def write_file_digest(path) -> None:
    """Put the whole-file digest into the user block of a finished archive (before it is renamed)."""
    block = _userblock(file_digest(path))
    with open(path, "rb+") as handle:
        handle.write(block)


def check_file_digest(path) -> bool | None:
    """True if the user block is exactly what :func:`write_file_digest` writes for the file as it is
    now, False if not, None if the user block holds no digest at all."""
    with open(path, "rb") as handle:
        head = handle.read(USERBLOCK_BYTES)
    if not head.startswith(FILE_DIGEST_TAG):
        return None
    return head == _userblock(file_digest(path))
