"""The pyramid codec's versions and what each allows (torch-free).

``pyramid`` 2 is 1 plus per-image quantization gains (``pack --target-psnr``); a pack writes 1
when every gain is 0, so that archivers reading only version 1 read it. ``pyramid`` 3 is 2 whose
graph is not stored but named by its base (``base.graph``: the SHA-256 of the base's graph file).
``pyramid`` 4 is 2 whose spec may name a context order (``context``: ``wavefront``,
:mod:`archiver.codecs.pyramid.wave`); its graph is named by its base when ``base`` has ``graph``,
else stored.
"""

from __future__ import annotations

__all__ = ["READS", "GRAPH_FROM_BASE_SINCE", "CONTEXT_ORDER_SINCE", "validate"]

#: Versions of the pyramid codec this archiver reads.
READS: tuple[int, ...] = (1, 2, 3, 4)
#: First version whose graph may come from its base instead of the archive.
GRAPH_FROM_BASE_SINCE = 3
#: First version whose spec may name a context order other than ``checkerboard``; from it on the
#: graph comes from the base exactly when the base names one.
CONTEXT_ORDER_SINCE = 4


def validate(desc) -> str | None:
    """What is wrong with ``desc`` (a :class:`archiver.codecs.CodecDescription` of this codec), or None.
    Versions 1–2 store their graph, version 3 takes it from its base, from version 4 on either."""
    if desc.version >= CONTEXT_ORDER_SINCE:
        return None
    from_base = desc.version >= GRAPH_FROM_BASE_SINCE
    if from_base != ("graph" in desc.base):
        return "must name its base's graph" if from_base else "cannot take its graph from a base"
    return None
