"""Base codecs: shipped starting points that are part of the format, and the difference from one
that an archive stores instead of its whole model (numpy only: extraction never imports torch).

A base is a file of this package, ``archiver/model/weights/<id>.npz``, listed with its SHA-256 in
:data:`BASES` and in ``docs/FORMAT.md``; a released base never changes (a test pins the hashes), a
new one gets a new id. Like Brotli's built-in dictionary (RFC 7932), it is shared data of the
format: an archive that names a base decodes from the specification plus that file.

**Base graphs.** A base may also ship its synthesis graph, ``<id>.graph.onnx`` (ONNX without weights,
exactly the bytes a self-contained archive stores in ``/model/decoder_onnx``, before zstd), listed
with its SHA-256 in :data:`BASE_GRAPHS`. An archive of ``pyramid`` codec version 3 takes its graph
from there instead of storing it (:func:`base_graph`): about 1.5 kB less in every archive, 0.75 % of
a 2,000-thumbnail archive at q2.

**Reference arrays.** From the base's float32 weights a reader computes exactly what a
self-contained archive would store for them (:func:`pyramid_reference`):

- ``decoder``: the synthesis in int8, per output channel: ``scale = max|W[o]| / 127`` (float32,
  1.0 where the row is all zero) and ``q = clip(round(W / scale), -127, 127)``, as
  :func:`quantize_int8`; biases float32.
- ``entropy``: the context network in fixed point, ``round(w · 2**8)`` clipped to ±(2**20 − 1),
  int32 (:meth:`archiver.codecs.pyramid.net.ContextNet.from_float`).

**Delta arrays** (:func:`to_delta`, :func:`from_delta`). For every integer array ``k`` of the
reference the archive stores ``k + ".delta"`` (int16 for int8 arrays, int32 for int32 arrays),
value minus reference; the reference's float ``.scale`` arrays are not stored (the fine-tuned
weights are quantized with the base's scales); every other array (biases, quantization steps,
tables) is stored whole. A reader adds the delta back in integers and checks the range (int8:
±127; int32: the context network's own range check follows).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ...errors import CorruptArchiveError, MissingBaseError
from ...codec.weights import quantize_int8

__all__ = [
    "BASES", "BASE_GRAPHS", "WEIGHTS_DIR", "base_file", "base_graph", "shipped_graph", "load_base", "pyramid_reference",
    "quantize_int8", "to_delta", "from_delta", "DELTA_SUFFIX",
]  # fmt: skip

#: Folder of the shipped weights (inside the installed package).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "model" / "weights"

#: Every released base: id → SHA-256 of ``<id>.npz``. Never edit a released entry; add a new id.
BASES: dict[str, str] = {
    # 2026-12-02: variable-rate pyramid base, 50,000 steps (1.28 CPU hours), see model/weights/README.md
    "pyramid-b1": "bf1e38b7fffd3f763ec50ac9f8d875b21a21d2cce7a3deeb37e10ad5dee343c9",
    # 2026-12-03: pyramid-b1 with the wavefront context (codec version 4), see model/weights/README.md
    "pyramid-b2": "3a980b82b2e0d05d498aa51a7cac9a607378d02c3be6d601dc123a45958535d1",
    # 2026-12-03: pyramid-b2 with a 12-wide context network (decodes faster), see model/weights/README.md
    "pyramid-b3": "5c7f5fb7410a985e288d962d26594078ea7293715898e76f3df4c09e23f353f6",
}

#: Every released base graph: id → SHA-256 of ``<id>.graph.onnx``. Never edit a released entry.
BASE_GRAPHS: dict[str, str] = {
    # 2026-12-03: the graph of pyramid-b1's spec (graph_only(build_pyramid_graph(spec)), onnx 1.23.2)
    "pyramid-b1": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
    # 2026-12-03: the same bytes as pyramid-b1's (the synthesis did not change)
    "pyramid-b2": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
    # 2026-12-03: the same bytes again (the context network's width is not part of the graph)
    "pyramid-b3": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
}

DELTA_SUFFIX = ".delta"


def base_file(base_id: str, sha256: str, folder: Path | None = None) -> Path:
    """The file of base ``base_id`` after checking that it is the one with ``sha256``.

    Raises :class:`MissingBaseError` naming the id and hash when it is not shipped here or differs.
    """
    path = (folder or WEIGHTS_DIR) / f"{base_id}.npz"
    known = BASES.get(base_id)
    if known is None or known != sha256 or not path.is_file():
        raise MissingBaseError(
            f"archive needs base codec {base_id} (sha256 {sha256}), which this archiver "
            f"{'does not ship' if known is None or known != sha256 else 'is missing (' + str(path) + ')'}; "
            "extract it with an archiver version that ships this base"
        )
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise MissingBaseError(f"base codec {base_id}: {path} does not have sha256 {sha256} (damaged install)")
    return path


def shipped_graph(base_id: str, folder: Path | None = None) -> tuple[bytes, str] | None:
    """(graph bytes, SHA-256) of base ``base_id``'s released graph, or None when it ships none here
    (pack then stores the graph in the archive, as for a base without one)."""
    sha = BASE_GRAPHS.get(base_id)
    path = (folder or WEIGHTS_DIR) / f"{base_id}.graph.onnx"
    if sha is None or not path.is_file():
        return None
    data = path.read_bytes()
    return (data, sha) if hashlib.sha256(data).hexdigest() == sha else None


def base_graph(base_id: str, sha256: str, folder: Path | None = None) -> bytes:
    """The graph an archive names (``codec.base.graph``), checked against its SHA-256.

    Raises :class:`MissingBaseError` naming the id and hash when it is not shipped here or differs.
    """
    path = (folder or WEIGHTS_DIR) / f"{base_id}.graph.onnx"
    if BASE_GRAPHS.get(base_id) != sha256 or not path.is_file():
        raise MissingBaseError(
            f"archive needs the graph of base codec {base_id} (sha256 {sha256}), which this archiver does "
            "not ship; extract it with an archiver version that ships this base"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise MissingBaseError(f"base codec {base_id}: {path} does not have sha256 {sha256} (damaged install)")
    return data


def load_base(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, float32 arrays by state key) of a base file."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k[len("codec."):]: data[k].astype(np.float32) for k in data.files if k.startswith("codec.")}
    return meta, arrays


def int8_reference(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays an archive stores for the base's sub-module ``prefix`` (``"synthesis."``,
    ``"encoder."``): conv weights in int8 with their own per-channel scales (:func:`quantize_int8`),
    everything else as it is, named without the prefix."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.endswith(".weight") and value.ndim == 4:
            out[name + ".q"], out[name + ".scale"] = quantize_int8(value)
        else:
            out[name] = value
    return out


def pyramid_reference(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The arrays a self-contained pyramid archive would store for the base's own weights:
    ``{"decoder": synthesis int8 arrays, "entropy": context.* int32 arrays}``."""
    from .net import ContextNet

    _, state = load_base(path)
    decoder = int8_reference(state, "synthesis.")
    phases = []
    for p in sorted({int(k.split(".")[2]) for k in state if k.startswith("context.mlps.")}):
        linears = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith(f"context.mlps.{p}.")},
                         key=lambda k: int(k.rsplit(".", 1)[1]))  # fmt: skip
        phases.append([(state[k + ".weight"].astype(np.float64), state[k + ".bias"].astype(np.float64)) for k in linears])
    entropy = {f"context.{k}": v for k, v in ContextNet.from_float(phases).to_arrays().items()}
    return {"decoder": decoder, "entropy": entropy}


def to_delta(arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What an archive stores for ``arrays`` against ``reference`` (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        ref = reference.get(name)
        if ref is not None and name.endswith(".scale"):  # implied by the base
            if not np.array_equal(ref, value):
                raise ValueError(f"{name}: quantized with another scale than the base's")
            continue
        if ref is None or ref.dtype.kind not in "iu" or ref.shape != value.shape or ref.dtype != value.dtype:
            out[name] = value  # floats (biases, steps) and arrays the base has not (tables)
            continue
        diff = value.astype(np.int64) - ref.astype(np.int64)
        out[name + DELTA_SUFFIX] = diff.astype(np.int16 if ref.dtype == np.int8 else np.int32)
    return out


def from_delta(stored: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`to_delta`: the arrays the fine-tuned model has (CorruptArchiveError on
    shapes that disagree with the base or sums out of range)."""
    out: dict[str, np.ndarray] = {}
    for name, value in stored.items():
        if not name.endswith(DELTA_SUFFIX):
            out[name] = value
            continue
        key = name[: -len(DELTA_SUFFIX)]
        ref = reference.get(key)
        if ref is None or ref.shape != value.shape:
            raise CorruptArchiveError(f"model delta {key}: no base array of shape {tuple(value.shape)}")
        total = ref.astype(np.int64) + value.astype(np.int64)
        if ref.dtype == np.int8:
            if np.abs(total).max(initial=0) > 127:
                raise CorruptArchiveError(f"model delta {key}: int8 weight out of range")
            out[key] = total.astype(np.int8)
        else:
            if np.abs(total).max(initial=0) > np.iinfo(np.int32).max:
                raise CorruptArchiveError(f"model delta {key}: weight out of range")
            out[key] = total.astype(ref.dtype)
    for key, ref in reference.items():  # the scales the fine-tuned weights were quantized with
        if key.endswith(".scale") and key not in out:
            out[key] = ref
    return out
