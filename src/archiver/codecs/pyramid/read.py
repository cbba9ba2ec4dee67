"""The pyramid's read side: what extraction needs to decode its images (numpy + ONNX Runtime)."""

from __future__ import annotations

from .. import CodecDescription
from ...errors import CorruptArchiveError, InputError, MissingBaseError
from ..readside import no_codec_data, no_gain, runtime_imports
from .versions import CONTEXT_ORDER_SINCE, PLAIN_LAYOUT_SINCE, TAIL_GRAPH, TAIL_SINCE

__all__ = [
    "PyramidReadSide", "PYRAMID_TILE_PX", "PYRAMID_HALO_PX", "pyramid_tiling", "synthesis_threads",
    "synthesis_runtime", "tail_runtime",
]  # fmt: skip


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
        from .plan import PyramidSpec

        self.reader, self.desc = reader, desc
        try:
            self.spec = PyramidSpec.from_dict(desc.spec)
        except (ValueError, TypeError, InputError) as exc:
            raise CorruptArchiveError(f"{reader.path}: the pyramid codec's spec is not one: {exc}") from None
        if self.spec.context != "checkerboard" and desc.version < CONTEXT_ORDER_SINCE:
            raise CorruptArchiveError(
                f"{reader.path}: pyramid codec version {desc.version} cannot use the {self.spec.context} context order"
            )
        if desc.version >= TAIL_SINCE and not reader.has_model(TAIL_GRAPH):
            raise CorruptArchiveError(f"{reader.path}: pyramid codec version {desc.version} needs its tail graph "
                                      f"(/model/{TAIL_GRAPH}), which is missing")  # fmt: skip
        self.stride, self.min_size = self.spec.stride, 0
        self.tile, self.halo = pyramid_tiling(self.stride)
        self._reference: dict | None = None

    #: the ``/model`` weight blobs this codec stores: the synthesis and the context network
    model_names = ("decoder", "entropy")

    def macs_per_pixel(self) -> float:
        """Multiply–accumulates per pixel of the synthesis and the context network (its entropy
        model runs a network)."""
        from .plan import context_macs_per_pixel

        return self.spec.macs_per_pixel() + context_macs_per_pixel(self.spec)

    def model_arrays(self, name: str = "decoder") -> dict:
        """The arrays of ``/model/<name>`` (decoder or entropy) as the fine-tuned model has them: an
        archive made from a base stores their difference from it (:mod:`archiver.codecs.pyramid.bases`)."""
        arrays = self.reader.model_arrays(name)
        if not self.desc.base:
            return arrays
        from .bases import base_file, from_delta, pyramid_reference

        if self._reference is None:
            try:
                self._reference = pyramid_reference(base_file(self.desc.base["id"], self.desc.base["sha256"]))
            except MissingBaseError as exc:
                raise MissingBaseError(f"{self.reader.path}: {exc}") from None
        return from_delta(arrays, self._reference[name])

    def check_decodable(self) -> None:
        """Raise :class:`MissingBaseError` now if the archive's base codec is not shipped here, and
        :class:`CorruptArchiveError` if a version-6 archive's tail graph fails its SHA-256."""
        if self.desc.base:
            self.model_arrays("decoder")
            self.graph()
        if self.desc.version >= TAIL_SINCE:
            self.reader.onnx_graph(TAIL_GRAPH)

    def graph(self) -> bytes:
        """The synthesis graph: stored in the archive, or (version 3) the one its base ships."""
        if "graph" not in self.desc.base:
            return self.reader.onnx_graph()
        from .bases import base_graph

        try:
            return base_graph(self.desc.base["id"], self.desc.base["graph"])
        except MissingBaseError as exc:
            raise MissingBaseError(f"{self.reader.path}: {exc}") from None

    def synthesis_input(self, latent, record):
        """``latent`` scaled by its ``record``'s gain (version 2; :func:`archiver.codec.gain.apply_gain`);
        from version 6 on followed by its tail's channels (:func:`archiver.codecs.pyramid.tail.tail_input`)."""
        if self.desc.version < TAIL_SINCE:
            no_codec_data(record)
            if self.desc.version < 2:
                return no_gain(latent, record.gain)
        from ...codec.gain import apply_gain

        x = apply_gain(latent, record.gain)
        if self.desc.version < TAIL_SINCE:
            return x
        from .tail import tail_input

        return tail_input(x, record.codec, self.spec.hidden[-1])

    def coder(self):
        from .coder import PackedPyramidCoder

        return PackedPyramidCoder.from_arrays(self.spec, self.model_arrays("entropy"))

    def runtime(self, provider: str, threads: int | None, spin: bool = True):
        """The synthesis session; ``threads`` None: :func:`synthesis_threads`. From version 6 on a
        :class:`~archiver.codecs.pyramid.tail.TailRuntime` (the tail graph's session built when an
        image with a tail first needs it)."""
        attach_weights, _ = runtime_imports()
        arrays = self.model_arrays("decoder")
        threads = synthesis_threads() if threads is None else threads
        plain = synthesis_runtime(attach_weights(self.graph(), arrays), self.spec.stride, self.desc.version, provider,
                                  threads, spin)  # fmt: skip
        if self.desc.version < TAIL_SINCE:
            return plain
        return tail_runtime(plain, self.reader.onnx_graph(TAIL_GRAPH), arrays, self.spec, self.desc.version, provider,
                            threads, spin)  # fmt: skip


def synthesis_runtime(model, stride: int, version: int, provider: str = "cpu", threads: int | None = None,
                      spin: bool = True):  # fmt: skip
    """The runtime (:class:`archiver.runtime.session.OnnxDecoder`) that decodes the synthesis
    ``model`` (graph with weights) of a pyramid of ``stride`` exactly as codec ``version`` measured
    its pixels: pack, append and extract all decode through it."""
    _, OnnxDecoder = runtime_imports()
    tile, halo = pyramid_tiling(stride)
    return OnnxDecoder(model, provider, threads, stride, tile, halo, spin, layout=version < PLAIN_LAYOUT_SINCE)


def tail_runtime(plain, graph: bytes, arrays: dict, spec, version: int, provider: str = "cpu",
                 threads: int | None = None, spin: bool = True):  # fmt: skip
    """A :class:`~archiver.codecs.pyramid.tail.TailRuntime`: ``plain`` (the synthesis session) for
    images without a tail, and the session of the tail ``graph`` (without weights) with the
    synthesis' ``arrays``, made as :func:`synthesis_runtime` makes ``plain`` when an image with a
    tail first needs it. Pack (measuring) and extract both decode through it."""
    from .tail import TailRuntime

    attach_weights, _ = runtime_imports()

    def tailed():
        return synthesis_runtime(attach_weights(graph, arrays), spec.stride, version, provider, threads, spin)

    return TailRuntime(plain, tailed, spec.packed_channels)


def synthesis_threads() -> int:
    """Intra-op threads of the pyramid synthesis when the caller sets none: every core but one,
    which the entropy thread keeps busy (its wavefront decoding takes longer than the synthesis).
    Extracting the 48-photo album (2 cores, four alternating fresh extracts): 7.6–9.3 s with one
    runtime thread against 8.3–10.7 s with two."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)
