"""The post-filter as an ONNX graph (uint8 RGB in, uint8 RGB out), mirroring model/denoiser.py."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from .graph import Builder
from .proto import DENOISER_INPUT  #: uint8 [N, 3, H, W]

__all__ = ["build_denoiser_graph", "DENOISER_INPUT"]


def build_denoiser_graph(channels: int, blocks: int, arrays: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """ONNX model of :class:`archiver.model.denoiser.Denoiser` with int8 weights (names as its state dict)."""
    b = Builder(arrays)
    x0 = b.node("Div", [b.node("Cast", [DENOISER_INPUT], to=TensorProto.FLOAT), b.const("c255", np.array(255.0, np.float32))])
    x = b.act(b.conv(x0, "head", channels))
    squeeze = max(4, channels // 4)
    for i in range(blocks):
        base = f"blocks.{i}"
        y = b.conv(b.act(b.conv(x, base + ".conv1", channels)), base + ".conv2", channels)
        s = b.node("Relu", [b.conv(b.node("GlobalAveragePool", [y]), base + ".squeeze", squeeze, k=1)])
        w = b.node("Sigmoid", [b.conv(s, base + ".excite", channels, k=1)])
        x = b.node("Add", [x, b.node("Mul", [y, w])])
    x = b.node("Add", [x0, b.conv(x, "tail", 3)])
    return b.finish(x, "archiver_denoiser", TensorProto.UINT8, [3, "H", "W"], DENOISER_INPUT)


