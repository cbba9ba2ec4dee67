"""The ``pyramid`` codec's synthesis as an ONNX graph (numpy and onnx only, no torch).

Input ``latent``: float32 [N, packed_channels, h, w], the decoded integers of every level packed at
the coarsest grid's positions (:func:`archiver.codecs.pyramid.plan.pack_grids`); each level's channels
are sliced out and put back at their resolution by ``DepthToSpace`` (mode DCR). Each grid is multiplied by its level's quantization step (the archive's ``quant.steps``,
float32 (L,)), upsampled to H × W by linear interpolation (``half_pixel``: torch's bilinear with
``align_corners=False``), concatenated level 0 first, then run through the layers of
:meth:`archiver.codecs.pyramid.plan.PyramidSpec.synthesis_plan` (weights ``layers.<i>.weight.q`` /
``.scale`` int8 per output channel, ``layers.<i>.bias`` float32) and ends like the autoencoder's graph:
``Cast(Round(Clip(x + 0.5, 0, 1) · 255))`` to uint8 ``rgb`` [N, 3, H, W].
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from .plan import PyramidSpec
from ...runtime.graph import INPUT, Builder

__all__ = ["build_pyramid_graph"]


def build_pyramid_graph(spec: PyramidSpec, arrays: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """ONNX model of the pyramid synthesis; with ``arrays`` its weights are included."""
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
    for i, layer in enumerate(spec.synthesis_plan()):
        y = b.conv(x, f"layers.{i}", layer.cout, k=layer.kernel)
        if layer.act:
            y = b.act(y, spec.leaky_slope)
        x = b.node("Add", [x, y]) if layer.residual else y
    x = b.node("Add", [x, b.const("half", np.array(0.5, np.float32))])
    return b.finish(x, "archiver_pyramid", TensorProto.FLOAT, [spec.packed_channels, "h", "w"], INPUT)
