"""The codec seam: every image codec an archive can name, and the read side of each (numpy + ONNX
Runtime, never torch).

An archive names its codec in its ``codec`` document (JSON ``{"name", "version", "spec"}``,
format version 3 on); archives without it use ``autoencoder`` version 1, described by
``config.model``. A read side gives what decoding needs, whatever the codec:

- ``desc``: the :class:`CodecDescription` it was made from; ``stride``: pixels per latent position; ``min_size``: smallest side an image was coded at;
- ``coder()``: an object with ``decode(bitstream, h, w) -> (C, h, w) int32 latent`` (and ``encode``);
- ``runtime(provider, threads, spin=True)``: an :class:`archiver.runtime.session.OnnxDecoder` that turns a batch of
  latents into pixels, tiling large ones;
- ``check_decodable()``: raises before any output is written if decoding needs something this
  archiver does not have (a base codec, :mod:`archiver.codec.bases`);
- ``model_arrays(name)``: the weights of ``/model/<name>`` as the model has them (a pyramid archive
  may store them as their difference from a base codec);
- ``synthesis_input(latent, gain)``: what the runtime is given for an image's integer latent and its
  record's gain code (``pyramid`` version 2, :mod:`archiver.codec.gain`; other codecs have none);
- ``graph()``: the decoder's ONNX graph without weights (``/model/decoder_onnx``, or for ``pyramid``
  version 3 the graph its base codec ships, :func:`archiver.codec.bases.base_graph`).

The train side of each codec lives in :mod:`archiver.model` (``training`` for ``autoencoder``,
``pyramid_train`` for ``pyramid``) and is reached from :mod:`archiver.pack`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..config import _Serializable
from ..errors import CorruptArchiveError, InputError, MissingBaseError, MissingDependencyError

__all__ = [
    "CodecDescription", "CODECS", "describe", "read_side", "AutoencoderReadSide", "PyramidReadSide", "pyramid_tiling",
    "synthesis_threads",
]  # fmt: skip

#: Codec names and the versions of each this archiver reads.
#: ``pyramid`` 2 is 1 plus per-image quantization gains (``pack --target-psnr``); a pack writes 1
#: when every gain is 0, so that archivers reading only version 1 read it. ``pyramid`` 3 is 2 whose
#: graph is not stored but named by its base (``base.graph``: the SHA-256 of the base's graph file).
#: ``pyramid`` 4 is 2 whose spec may name a context order (``context``: ``wavefront``,
#: :mod:`archiver.codecs.pyramid.wave`); its graph is named by its base when ``base`` has ``graph``,
#: else stored.
CODECS: dict[str, tuple[int, ...]] = {"autoencoder": (1,), "pyramid": (1, 2, 3, 4)}
#: First ``pyramid`` version whose graph may come from its base instead of the archive.
GRAPH_FROM_BASE_SINCE = 3
#: First ``pyramid`` version whose spec may name a context order other than ``checkerboard``; from
#: it on the graph comes from the base exactly when the base names one.
CONTEXT_ORDER_SINCE = 4
#: First format version whose archives may carry a ``codec`` document.
CODEC_ATTR_SINCE = 3


@dataclass(frozen=True)
class CodecDescription(_Serializable):
    """What an archive says about its image codec (separate from how it was packed)."""

    name: str = "autoencoder"
    version: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    #: ``{"id", "sha256"}`` of the base codec the model is stored as a difference from
    #: (:mod:`archiver.codec.bases`), plus ``"graph"`` (the SHA-256 of the base's graph) in
    #: ``pyramid`` version 3; empty: the archive stores its whole model.
    base: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if not self.base:
            del out["base"]  # self-contained archives keep the document of format version 3's first release
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def describe(reader) -> CodecDescription:
    """The codec of an open :class:`~archiver.container.reader.ArchiveReader` (validated)."""
    raw = reader.codec_attr()
    if raw is None:
        return CodecDescription("autoencoder", 1, reader.config.get("model", {}))
    if reader.format_version < CODEC_ATTR_SINCE:
        raise CorruptArchiveError(f"{reader.path}: a codec attribute in a format version {reader.format_version} archive")
    try:
        data = json.loads(raw)
        base = data.get("base", {})
        keys = ("id", "sha256", "graph") if "graph" in base else ("id", "sha256")
        base = {k: str(base[k]) for k in keys} if base else {}
        desc = CodecDescription(str(data["name"]), int(data["version"]), dict(data["spec"]), base)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptArchiveError(f"{reader.path}: the codec document is not a codec description ({exc})") from None
    # versions 1–2 store their graph, version 3 takes it from its base, from version 4 on either
    from_base = desc.name == "pyramid" and desc.version >= GRAPH_FROM_BASE_SINCE
    either = desc.name == "pyramid" and desc.version >= CONTEXT_ORDER_SINCE
    if not either and from_base != ("graph" in desc.base):
        raise CorruptArchiveError(
            f"{reader.path}: codec {desc.name!r} version {desc.version} "
            + ("must name its base's graph" if from_base else "cannot take its graph from a base")
        )
    if desc.version not in CODECS.get(desc.name, ()):
        raise CorruptArchiveError(
            f"{reader.path}: codec {desc.name!r} version {desc.version} is not one this archiver reads "
            f"({', '.join(f'{n} {v}' for n, v in CODECS.items())})"
        )
    return desc


def _no_gain(latent, gain: int):
    if gain:
        raise CorruptArchiveError("the image has a quantization gain, which its codec does not have")
    return latent


def _runtime_imports():
    try:
        import onnxruntime  # noqa: F401  (a missing install is named now, not at session time)

        from ..runtime.proto import attach_weights
        from ..runtime.session import OnnxDecoder
    except ImportError as exc:
        raise MissingDependencyError(f"decoding images needs onnxruntime ({exc})") from None
    return attach_weights, OnnxDecoder


class AutoencoderReadSide:
    """Format versions 1–2 codec: one latent at 1/16, per-channel or context tables, conv decoder."""

    def __init__(self, reader, desc: CodecDescription) -> None:
        from ..config import ModelConfig
        from ..runtime.session import HALO, TILE

        self.reader, self.desc = reader, desc
        self.model = ModelConfig.from_dict(desc.spec)
        self.stride, self.min_size = self.model.stride, reader.min_size
        self.tile, self.halo = TILE, HALO

    def check_decodable(self) -> None:
        """Nothing outside the archive is needed."""

    def model_arrays(self, name: str = "decoder") -> dict:
        """The arrays of ``/model/<name>`` (stored whole)."""
        return self.reader.model_arrays(name)

    def synthesis_input(self, latent, gain: int = 0):
        """The latent itself (this codec has no per-image gains)."""
        return _no_gain(latent, gain)

    def coder(self):
        from ..codec.entropy import LatentCoder

        return LatentCoder(self.reader.tables())

    def graph(self) -> bytes:
        """The decoder's ONNX graph (stored, or rebuilt from ``config.model`` for the oldest archives)."""
        return self.reader.onnx_graph()

    def runtime(self, provider: str, threads: int | None, spin: bool = True):
        attach_weights, OnnxDecoder = _runtime_imports()
        model = attach_weights(self.graph(), self.reader.model_arrays())
        return OnnxDecoder(model, provider, threads, self.stride, self.tile, self.halo, spin)


#: The pyramid's runtime tiles: pixels per tile side, and pixels of context around a tile (bilinear
#: upsampling reads one coarse cell beyond the tile, the 3×3 layers one pixel each). Tried and not
#: taken: 1024-px tiles (a 768×576 photo in one piece instead of four tiles holding 43 % more
#: pixels than it has). The album's synthesis alone took 3.9 s instead of 4.6–5.1 s with the same
#: pixels, but fresh extracts stayed within the noise (8.8–10.1 s against 9.4–9.9 s; the entropy
#: thread sets the pace) while peak RSS rose from 462 to 640 MB, and the tiling defines the
#: decoded pixels, so it would have needed a codec version.
PYRAMID_TILE_PX = 512
PYRAMID_HALO_PX = 64


def pyramid_tiling(stride: int) -> tuple[int, int]:
    """(tile, halo) in packed latent positions for a pyramid of ``stride`` (pack and extract agree)."""
    return max(1, PYRAMID_TILE_PX // stride), max(1, -(-PYRAMID_HALO_PX // stride))


class PyramidReadSide:
    """The latent-pyramid codec: grids from full size to 1/2**(L-1), integer context coder, tiny
    synthesis. Latents travel packed at the coarsest grid (:func:`archiver.codecs.pyramid.plan.pack_grids`)."""

    def __init__(self, reader, desc: CodecDescription) -> None:
        from .pyramid.plan import PyramidSpec

        self.reader, self.desc = reader, desc
        try:
            self.spec = PyramidSpec.from_dict(desc.spec)
        except (ValueError, TypeError, InputError) as exc:
            raise CorruptArchiveError(f"{reader.path}: the pyramid codec's spec is not one: {exc}") from None
        if self.spec.context != "checkerboard" and desc.version < CONTEXT_ORDER_SINCE:
            raise CorruptArchiveError(
                f"{reader.path}: pyramid codec version {desc.version} cannot use the {self.spec.context} context order"
            )
        self.stride, self.min_size = self.spec.stride, 0
        self.tile, self.halo = pyramid_tiling(self.stride)
        self._reference: dict | None = None

    def model_arrays(self, name: str = "decoder") -> dict:
        """The arrays of ``/model/<name>`` (decoder or entropy) as the fine-tuned model has them: an
        archive made from a base stores their difference from it (:mod:`archiver.codec.bases`)."""
        arrays = self.reader.model_arrays(name)
        if not self.desc.base:
            return arrays
        from ..codec.bases import base_file, from_delta, pyramid_reference

        if self._reference is None:
            try:
                self._reference = pyramid_reference(base_file(self.desc.base["id"], self.desc.base["sha256"]))
            except MissingBaseError as exc:
                raise MissingBaseError(f"{self.reader.path}: {exc}") from None
        return from_delta(arrays, self._reference[name])

    def check_decodable(self) -> None:
        """Raise :class:`MissingBaseError` now if the archive's base codec is not shipped here."""
        if self.desc.base:
            self.model_arrays("decoder")
            self.graph()

    def graph(self) -> bytes:
        """The synthesis graph: stored in the archive, or (version 3) the one its base ships."""
        if "graph" not in self.desc.base:
            return self.reader.onnx_graph()
        from ..codec.bases import base_graph

        try:
            return base_graph(self.desc.base["id"], self.desc.base["graph"])
        except MissingBaseError as exc:
            raise MissingBaseError(f"{self.reader.path}: {exc}") from None

    def synthesis_input(self, latent, gain: int = 0):
        """``latent`` scaled by its gain (version 2; :func:`archiver.codec.gain.apply_gain`)."""
        if self.desc.version < 2:
            return _no_gain(latent, gain)
        from ..codec.gain import apply_gain

        return apply_gain(latent, gain)

    def coder(self):
        from .pyramid.coder import PackedPyramidCoder

        return PackedPyramidCoder.from_arrays(self.spec, self.model_arrays("entropy"))

    def runtime(self, provider: str, threads: int | None, spin: bool = True):
        """The synthesis session; ``threads`` None: :func:`synthesis_threads`."""
        attach_weights, OnnxDecoder = _runtime_imports()
        model = attach_weights(self.graph(), self.model_arrays("decoder"))
        threads = synthesis_threads() if threads is None else threads
        return OnnxDecoder(model, provider, threads, self.stride, self.tile, self.halo, spin)


def synthesis_threads() -> int:
    """Intra-op threads of the pyramid synthesis when the caller sets none: every core but one,
    which the entropy thread keeps busy (its wavefront decoding takes longer than the synthesis).
    Extracting the 48-photo album (2 cores, four alternating fresh extracts): 7.6–9.3 s with one
    runtime thread against 8.3–10.7 s with two."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def read_side(reader):
    """The read side of the archive's codec."""
    desc = describe(reader)
    if desc.name == "pyramid":
        return PyramidReadSide(reader, desc)
    return AutoencoderReadSide(reader, desc)
