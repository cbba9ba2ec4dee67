"""The pyramid codec's versions and what each allows (torch-free).

``pyramid`` 2 is 1 plus per-image quantization gains (``pack --target-psnr``); a pack writes 1
when every gain is 0, so that archivers reading only version 1 read it. ``pyramid`` 3 is 2 whose
graph is not stored but named by its base (``base.graph``: the SHA-256 of the base's graph file).
``pyramid`` 4 is 2 whose spec may name a context order (``context``: ``wavefront``,
:mod:`archiver.codecs.pyramid.wave`); its graph is named by its base when ``base`` has ``graph``,
else stored. ``pyramid`` 5 is 4 whose pixel checks were measured with the synthesis run without
ONNX Runtime's layout optimizations (:func:`archiver.codecs.pyramid.read.synthesis_runtime`);
a pack writes it when no image keeps a tail. ``pyramid`` 6 is 5 whose images may carry tails (their
own delta to the synthesis' last 1×1 layer, :mod:`archiver.codecs.pyramid.tail`): the archive then
stores the tail graph at ``/model/tail_onnx``; a pack writes 6 only when some image keeps one.
"""

from __future__ import annotations

__all__ = ["READS", "GRAPH_FROM_BASE_SINCE", "CONTEXT_ORDER_SINCE", "PLAIN_LAYOUT_SINCE", "TAIL_SINCE", "WRITES", "TAIL_GRAPH", "validate"]

#: Versions of the pyramid codec this archiver reads.
READS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: First version whose graph may come from its base instead of the archive.
GRAPH_FROM_BASE_SINCE = 3
#: First version whose spec may name a context order other than ``checkerboard``; from it on the
#: graph comes from the base exactly when the base names one.
CONTEXT_ORDER_SINCE = 4
#: First version decoded without ONNX Runtime's layout optimizations (its pixel checks were made so).
PLAIN_LAYOUT_SINCE = 5
#: First version whose images may carry tails (per-image codec data).
TAIL_SINCE = 6
#: The ``/model`` name of the tail graph (without weights: it reads ``/model/decoder``'s).
TAIL_GRAPH = "tail_onnx"
#: The version a pack writes when no image keeps a tail (an append keeps its archive's).
WRITES = PLAIN_LAYOUT_SINCE


def validate(desc) -> str | None:
    """What is wrong with ``desc`` (a :class:`archiver.codecs.CodecDescription` of this codec), or None.
    Versions 1–2 store their graph, version 3 takes it from its base, from version 4 on either."""
    if desc.version >= CONTEXT_ORDER_SINCE:
        return None
    from_base = desc.version >= GRAPH_FROM_BASE_SINCE
    if from_base != ("graph" in desc.base):
        return "must name its base's graph" if from_base else "cannot take its graph from a base"
    return None
