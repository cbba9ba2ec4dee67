"""Serialize named numpy arrays (the int8 decoder) into one zstd blob plus a JSON-able manifest."""

from __future__ import annotations

import numpy as np
import zstandard

from ..errors import CorruptArchiveError

__all__ = ["pack_arrays", "unpack_arrays", "quantize_int8", "ALLOWED_DTYPES"]

#: dtypes a weight blob may hold (little-endian on disk): int8/float32 for networks, int32/uint8 for
#: a fixed-point context network and quantized table counts (format version 3);
#: int16 for int8 weights stored as their difference from a base codec (a codec's shipped base).
ALLOWED_DTYPES = ("int8", "float32", "int32", "uint8", "int16")


def pack_arrays(arrays: dict[str, np.ndarray], level: int = 19) -> tuple[bytes, list[dict]]:
    """Concatenate arrays (C order, little-endian) and zstd-compress them.

    Returns the blob and a manifest: one ``{"name", "dtype", "shape"}`` per array, in blob order.
    """
    manifest: list[dict] = []
    chunks: list[bytes] = []
    for name, array in arrays.items():
        dtype = np.dtype(array.dtype).name
        if dtype not in ALLOWED_DTYPES:
            raise ValueError(f"array {name} has dtype {dtype}; allowed: {ALLOWED_DTYPES}")
        manifest.append({"name": name, "dtype": dtype, "shape": list(array.shape)})
        chunks.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return zstandard.ZstdCompressor(level=level).compress(b"".join(chunks)), manifest


def unpack_arrays(blob: bytes, manifest: list[dict]) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays`; checks sizes against the manifest before slicing."""
    expected = 0
    for item in manifest:
        if item.get("dtype") not in ALLOWED_DTYPES:
            raise CorruptArchiveError(f"model manifest: dtype {item.get('dtype')!r} not allowed")
        expected += int(np.prod(item["shape"], dtype=np.int64)) * np.dtype(item["dtype"]).itemsize
    try:
        raw = zstandard.ZstdDecompressor().decompress(blob, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise CorruptArchiveError(f"model weights do not decompress: {exc}") from None
    if len(raw) != expected:
        raise CorruptArchiveError(f"model weights hold {len(raw)} bytes, manifest says {expected}")
    out: dict[str, np.ndarray] = {}
    pos = 0
    for item in manifest:
        dtype = np.dtype(item["dtype"]).newbyteorder("<")
        count = int(np.prod(item["shape"], dtype=np.int64))
        out[item["name"]] = np.frombuffer(raw, dtype=dtype, count=count, offset=pos).reshape(item["shape"]).astype(
            dtype.newbyteorder("=")
        )
        pos += count * dtype.itemsize
    return out


def quantize_int8(array: np.ndarray, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int8 q, float32 scale per output channel) of a conv weight (out, in, kh, kw); with ``scale``
    given, that scale is used (a fine-tuned layer coded against its base)."""
    flat = np.asarray(array, np.float32).reshape(array.shape[0], -1)
    if scale is None:
        scale = np.abs(flat).max(axis=1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(array.shape), np.asarray(scale, np.float32)
