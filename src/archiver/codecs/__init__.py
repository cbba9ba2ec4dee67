"""The codec registry: every image codec this archiver packs or reads, each one package
``archiver.codecs.<name>`` holding everything that codec knows (read side, coder, graph, torch model,
training, pack and append steps, rate control). This module is the one place outside those packages
that names them; the shared machinery asks the registry, never a codec's name.

An archive names its codec in its ``codec`` document (JSON ``{"name", "version", "spec"}``,
format version 3 on); archives without it use :data:`LEGACY_CODEC` version 1, described by
``config.model``. A codec package's ``__init__`` imports nothing heavy and provides:

- ``READS``: the versions of it this archiver reads; ``validate(desc)``: what is wrong with a
  description of it (None: nothing);
- ``read_side(reader, desc)``: what decoding needs (numpy + ONNX Runtime, never torch): ``desc``,
  ``stride`` (pixels per latent position), ``min_size``, ``coder()`` (``decode(bitstream, h, w)``),
  ``runtime(provider, threads, spin)`` (an :class:`archiver.runtime.session.OnnxDecoder`),
  ``check_decodable()``, ``model_arrays(name)``, ``model_names`` (the ``/model`` blobs it stores),
  ``synthesis_input(latent, record)``, ``graph()`` and ``macs_per_pixel()`` (decoder and entropy model);
- ``LAMBDAS`` (λ per ``--quality``), ``DEFAULT_QUALITY`` (``--quality`` when none is given);
  ``REFINE_TIME_FACTOR``, ``MEASURE_SECONDS_PER_MPX``, ``WRITE_SECONDS_PER_MPX`` and optionally
  ``REFINE_SECONDS_PER_MPX_STEP`` (how :mod:`archiver.time_budget` splits ``--time-limit``);
  ``RATE_CONTROL`` (whether it has per-image rates: ``--target-psnr``, ``--max-bytes``) and, where
  it does, ``quality_for(target_psnr=, bpp=)``, ``check_budget`` and ``write_within_budget``;
- ``check_options(cfg)`` (refuse, before any work, what it cannot do), ``resolve(cfg, pixels)``,
  ``code_images(...)`` (pack's training and coding) and ``code_new(...)`` (append's coding).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import CorruptArchiveError, InputError
from ..serial import _Serializable

__all__ = ["CodecDescription", "CODEC_NAMES", "DEFAULT_CODEC", "LEGACY_CODEC", "codec", "describe", "read_side"]

#: Codec name -> its package under ``archiver.codecs``; ``pack --codec`` offers them in this order.
REGISTRY: dict[str, str] = {"pyramid": ".pyramid", "autoencoder": ".autoencoder"}
CODEC_NAMES = tuple(REGISTRY)
#: What ``pack`` trains when no ``--codec`` is given: the codec that measured best in every regime
#: (dataset crops q4 32.6 dB where the autoencoder tops out near 27 dB, and near 24.5 dB on
#: thumbnails; benchmarks/results/README.md).
DEFAULT_CODEC = "pyramid"
#: The codec of archives that carry no ``codec`` document (format versions 1–2).
LEGACY_CODEC = "autoencoder"
#: First format version whose archives may carry a ``codec`` document.
CODEC_ATTR_SINCE = 3


def codec(name: str) -> ModuleType:
    """The package of codec ``name`` (:class:`InputError` for a name no codec has)."""
    if name not in REGISTRY:
        raise InputError(f"--codec must be one of {', '.join(CODEC_NAMES)}, got {name!r}")
    return importlib.import_module(REGISTRY[name], __name__)


@dataclass(frozen=True)
class CodecDescription(_Serializable):
    """What an archive says about its image codec (separate from how it was packed)."""

    name: str = LEGACY_CODEC
    version: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    #: ``{"id", "sha256"}`` of the base codec the model is stored as a difference from
    #: (:mod:`archiver.codecs.pyramid.bases`), plus ``"graph"`` (the SHA-256 of the base's graph) when the
    #: archive takes its graph from the base; empty: the archive stores its whole model.
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
        return CodecDescription(LEGACY_CODEC, 1, reader.config.get("model", {}))
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
    package = codec(desc.name) if desc.name in REGISTRY else None
    if package is None or desc.version not in package.READS:
        readable = ", ".join(f"{n} {v}" for n in CODEC_NAMES for v in codec(n).READS)
        raise CorruptArchiveError(
            f"{reader.path}: codec {desc.name!r} version {desc.version} is not one this archiver reads ({readable})"
        )
    problem = package.validate(desc)
    if problem:
        raise CorruptArchiveError(f"{reader.path}: codec {desc.name!r} version {desc.version} {problem}")
    return desc


def read_side(reader):
    """The read side of the archive's codec."""
    desc = describe(reader)
    return codec(desc.name).read_side(reader, desc)
