"""The ``pyramid`` codec's synthesis as an ONNX graph (numpy and onnx only, no torch).

Input ``latent``: float32 [N, packed_channels, h, w], the decoded integers of every level packed at
the coarsest grid's positions (:func:`archiver.codecs.pyramid.plan.pack_grids`); each level's channels
are sliced out and put back at their resolution by ``DepthToSpace`` (mode DCR). Each grid is multiplied by its level's quantization step (the archive's ``quant.steps``,
float32 (L,)), upsampled to H × W by linear interpolation (``half_pixel``: torch's bilinear with
``align_corners=False``), concatenated level 0 first, then run through the layers of
:meth:`archiver.codecs.pyramid.plan.PyramidSpec.synthesis_plan` (weights ``layers.<i>.weight.q`` /
``.scale`` int8 per output channel, ``layers.<i>.bias`` float32) and ends like the autoencoder's graph:
``Cast(Round(Clip(x + 0.5, 0, 1) · 255))`` to uint8 ``rgb`` [N, 3, H, W].

The **tail graph** (``tail=True``, codec version 6, :mod:`archiver.codecs.pyramid.tail`) takes
T = 3·(C + 1) more input channels after the packed latent's (C = ``hidden[-1]``), constant over each
image: their values at position (0, 0) are the image's ``ΔW`` (3, C, row by row) and ``Δb`` (3).
The last 1×1 layer's output becomes ``Conv(x) + Einsum("nchw,noc->nohw", x, ΔW) + Δb`` (x: that
layer's input); everything else is the plain graph's.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from .plan import PyramidSpec
from .tail import tail_values
from ...runtime.graph import INPUT, Builder

__all__ = ["build_pyramid_graph"]


def build_pyramid_graph(spec: PyramidSpec, arrays: dict[str, np.ndarray] | None = None,
                        tail: bool = False) -> onnx.ModelProto:  # fmt: skip
    """ONNX model of the pyramid synthesis; with ``arrays`` its weights are included; ``tail``:
    the tail graph (see the module docstring)."""
    b = Builder(arrays, int8=True)
    if arrays is not None:
        b.const("quant.steps", arrays["quant.steps"].astype(np.float32))
    grids = []
    for level, (first, side) in enumerate(spec.blocks()):
        count = spec.channels[level] * side * side
        lo, hi = b.const(b.name("lo"), np.array([first], np.int64)), b.const(b.name("hi"), np.array([first + count], np.int64))
        axis = b.const(b.name("axis"), np.array([1], np.int64))
        block = b.node("Slice", [INPUT, lo, hi, axis])
        grids.append(b.node("DepthToSpace", [block], blocksize=side, mode="DCR") if side > 1 else block)
    size = b.node("Shape", [grids[0]])
    ups = []
    for level, grid in enumerate(grids):
        index = b.const(b.name("level"), np.array([level], np.int64))
        scaled = b.node("Mul", [grid, b.node("Gather", ["quant.steps", index])])
        if level == 0:
            ups.append(scaled)
            continue
        # sizes: N and C of this level, H and W of level 0
        own = b.node("Shape", [scaled])
        zero, two, four = (b.const(b.name("i"), np.array([v], np.int64)) for v in (0, 2, 4))
        sizes = b.node("Concat", [b.node("Slice", [own, zero, two]), b.node("Slice", [size, two, four])], axis=0)
        ups.append(b.node("Resize", [scaled, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel"))
    x = b.node("Concat", ups, axis=1)
    last = len(spec.hidden)  # the last 1×1 layer: the one a tail changes
    for i, layer in enumerate(spec.synthesis_plan()):
        y = b.conv(x, f"layers.{i}", layer.cout, k=layer.kernel)
        if tail and i == last:
            y = b.node("Add", [y, _tail_delta(b, spec, x)])
        if layer.act:
            y = b.act(y, spec.leaky_slope)
        x = b.node("Add", [x, y]) if layer.residual else y
    x = b.node("Add", [x, b.const("half", np.array(0.5, np.float32))])
    channels = spec.packed_channels + (tail_values(spec.hidden[-1]) if tail else 0)
    return b.finish(x, "archiver_pyramid", TensorProto.FLOAT, [channels, "h", "w"], INPUT)


def _tail_delta(b: Builder, spec: PyramidSpec, x: str) -> str:
    """``Einsum(x, ΔW) + Δb`` of the tail channels (read at position (0, 0) of the input)."""
    cin, first = spec.hidden[-1], spec.packed_channels
    count = tail_values(cin)
    starts = b.const(b.name("i"), np.array([first, 0, 0], np.int64))
    ends = b.const(b.name("i"), np.array([first + count, 1, 1], np.int64))
    axes = b.const(b.name("i"), np.array([1, 2, 3], np.int64))
    values = b.node("Slice", [INPUT, starts, ends, axes])  # (N, T, 1, 1)
    flat = b.node("Flatten", [values], axis=1)  # (N, T)
    one, split, end = (b.const(b.name("i"), np.array([v], np.int64)) for v in (1, 3 * cin, count))
    zero = b.const(b.name("i"), np.array([0], np.int64))
    dw = b.node("Reshape", [b.node("Slice", [flat, zero, split, one]), b.const(b.name("shape"), np.array([0, 3, cin], np.int64))])
    db = b.node("Reshape", [b.node("Slice", [flat, split, end, one]), b.const(b.name("shape"), np.array([0, 3, 1, 1], np.int64))])
    return b.node("Add", [b.node("Einsum", [x, dw], equation="nchw,noc->nohw"), db])
