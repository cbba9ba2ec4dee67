"""Per-image tails (``pyramid`` codec version 6): an image's own additive delta to the synthesis'
last 1×1 layer, its byte layout and what the decoder does with it (numpy only, no torch).

The last 1×1 layer maps the ``C`` = ``hidden[-1]`` features of a pixel to RGB (before the 3×3
refinement): ``W`` (3, C), ``b`` (3). An image with a tail decodes through ``W + ΔW`` and
``b + Δb`` instead, where every number of ``ΔW`` and ``Δb`` is an integer ``q`` times the tail's
step ``2**-k``. Its record's per-image codec data (``ImageRecord.codec``) is the tail, laid out as

    u8 k (TAIL_STEP_MIN ≤ k ≤ TAIL_STEP_MAX) | bits

``bits``: the 3·(C + 1) integers ``q`` (``ΔW`` row by row, output channel first, then ``Δb``), each
mapped to ``u`` = 2q − 1 for q > 0 and −2q otherwise and written as an order-0 exp-Golomb code
(``n`` zero bits, then the ``n + 1`` bits of ``u + 1``, most significant first, with ``n`` =
⌊log2(u + 1)⌋), most significant bit of each byte first, then zero bits to the end of the last byte;
no byte may follow. ``|q|`` ≤ :data:`TAIL_MAX_Q`. An image without a tail has no codec data.

The decoder feeds a tail to the synthesis graph as 3·(C + 1) more input channels after the packed
latent's, each holding one of the numbers ``q · 2**-k`` (float32, exact) at every position
(:func:`tail_input`); images without one decode through the plain graph (:class:`TailRuntime`).
"""

from __future__ import annotations

import threading

import numpy as np

from ...errors import CorruptArchiveError

__all__ = [
    "TAIL_STEP", "TAIL_STEP_MIN", "TAIL_STEP_MAX", "TAIL_MAX_Q", "tail_values", "encode_tail", "decode_tail",
    "tail_input", "TailRuntime",
]  # fmt: skip

#: log2 of the inverse step pack writes (2**-10): issue 34's probe on 4 album photos at q4 (base
#: fine-tuned on them): the last layer's deltas at 1/256 gave −1.85 % of the loss λ·MSE + bpp, at
#: 1/1024 −2.07 % (benchmarks/results/per-image-params-finetuned-q4-fine.md); the int8 weights
#: themselves are of order 0.1–1.
TAIL_STEP = 10
#: Steps a reader accepts: 2**-4 … 2**-16.
TAIL_STEP_MIN, TAIL_STEP_MAX = 4, 16
#: Largest |q| a tail may hold (2**20 steps: far beyond any weight the layer has).
TAIL_MAX_Q = 1 << 20


def tail_values(cin: int) -> int:
    """How many numbers a tail of a last layer with ``cin`` inputs holds: 3·(cin + 1)."""
    return 3 * (cin + 1)


def encode_tail(q: np.ndarray, k: int = TAIL_STEP) -> bytes:
    """The codec data of a tail of integers ``q`` (ΔW row by row, then Δb) at step 2**-k."""
    if not TAIL_STEP_MIN <= k <= TAIL_STEP_MAX:
        raise ValueError(f"tail step 2**-{k} is outside 2**-{TAIL_STEP_MIN} … 2**-{TAIL_STEP_MAX}")
    bits: list[str] = []
    for v in np.asarray(q, dtype=np.int64).ravel().tolist():
        if abs(v) > TAIL_MAX_Q:
            raise ValueError(f"tail value {v} exceeds {TAIL_MAX_Q}")
        u = 2 * v - 1 if v > 0 else -2 * v
        code = bin(u + 1)[2:]
        bits.append("0" * (len(code) - 1) + code)
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return bytes([k]) + int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else bytes([k])


def decode_tail(data: bytes, cin: int) -> tuple[int, np.ndarray]:
    """(k, q int64 (3·(cin + 1),)) of a tail's codec data; :class:`CorruptArchiveError` for any
    other layout (see the module docstring)."""
    count = tail_values(cin)
    if len(data) < 1 or not TAIL_STEP_MIN <= data[0] <= TAIL_STEP_MAX:
        raise CorruptArchiveError("the image's tail has no valid step")
    # each value takes at least one bit, at most 2·21 + 1: bound the bytes before reading them
    if len(data) - 1 > (count * 43 + 7) // 8:
        raise CorruptArchiveError("the image's tail is longer than its values can be")
    bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=1))
    out, pos, n = np.empty(count, np.int64), 0, len(bits)
    for i in range(count):
        zeros = 0
        while pos < n and bits[pos] == 0:
            zeros, pos = zeros + 1, pos + 1
        if pos + zeros + 1 > n or zeros > 21:
            raise CorruptArchiveError("the image's tail ends inside a value")
        u = int("".join("1" if b else "0" for b in bits[pos : pos + zeros + 1]), 2) - 1
        pos += zeros + 1
        v = (u + 1) // 2 if u % 2 else -(u // 2)
        if abs(v) > TAIL_MAX_Q:
            raise CorruptArchiveError(f"the image's tail holds {v}, beyond ±{TAIL_MAX_Q}")
        out[i] = v
    if n - pos >= 8 or bits[pos:].any():
        raise CorruptArchiveError("the image's tail has bytes after its values")
    return int(data[0]), out


def tail_input(latent: np.ndarray, data: bytes, cin: int) -> np.ndarray:
    """The tail graph's input of one image: its packed latent (C, h, w) followed by the tail's
    3·(cin + 1) numbers as constant float32 channels (zeros when ``data`` is empty)."""
    _, h, w = latent.shape
    count = tail_values(cin)
    values = np.zeros(count, np.float32)
    if data:
        k, q = decode_tail(data, cin)
        values = (q.astype(np.float64) * 2.0**-k).astype(np.float32)
    planes = np.broadcast_to(values[:, None, None], (count, h, w))
    return np.concatenate([latent.astype(np.float32), planes], axis=0)


class TailRuntime:
    """The synthesis of an archive whose images may carry tails: inputs from :func:`tail_input`
    (packed latent, then the tail's channels). An image whose tail channels are all zero decodes
    through ``plain`` (its latent only: exactly what an archive without tails decodes), one with a
    tail through ``tailed`` (the graph with the tail inputs); which one depends only on the image,
    so pack's pixel checks and every extraction agree. Both are
    :class:`archiver.runtime.session.OnnxDecoder`; ``tailed`` is built on first use."""

    def __init__(self, plain, make_tailed, channels: int) -> None:
        self.plain, self._make, self._tailed = plain, make_tailed, None
        self._lock = threading.Lock()  # callers may decode from several threads (archiver.api)
        self.channels = channels  # the packed latent's channels
        self.stride, self.tile, self.halo = plain.stride, plain.tile, plain.halo

    def _has_tail(self, x: np.ndarray) -> bool:
        return bool(np.any(x[self.channels :, :1, :1]))

    def _tail_runtime(self):
        with self._lock:
            if self._tailed is None:
                self._tailed = self._make()
            return self._tailed

    def _runtime(self, x: np.ndarray):
        if not self._has_tail(x):
            return self.plain, x[: self.channels]
        return self._tail_runtime(), x

    def decode_batch(self, latents: np.ndarray) -> np.ndarray:
        """(N, C + T, h, w) inputs → (N, stride·h, stride·w, 3) uint8; each image through its graph."""
        flags = [self._has_tail(x) for x in latents]
        if not any(flags):
            return self.plain.decode_batch(latents[:, : self.channels])
        out = np.empty((len(latents), latents.shape[2] * self.stride, latents.shape[3] * self.stride, 3), np.uint8)
        plain = [i for i, f in enumerate(flags) if not f]
        tailed = [i for i, f in enumerate(flags) if f]
        if plain:
            out[plain] = self.plain.decode_batch(latents[plain][:, : self.channels])
        out[tailed] = self._tail_runtime().decode_batch(latents[tailed])
        return out

    def decode(self, latent: np.ndarray, height: int, width: int) -> np.ndarray:
        """One image's (C + T, h, w) input → (height, width, 3) uint8, tiled as the plain runtime tiles."""
        runtime, x = self._runtime(latent)
        return runtime.decode(x, height, width)
