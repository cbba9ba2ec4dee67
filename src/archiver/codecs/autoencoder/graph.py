"""The autoencoder's decoder as an ONNX graph, built from its layer plan with numpy and onnx only (no
torch): each convolution reads ``DequantizeLinear(q, scale, 0, axis=0)`` of its int8 initializer
(:class:`archiver.runtime.graph.Builder`), and the graph ends with the same
``round(clip(x + 0.5, 0, 1) · 255)`` as the torch decoder."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from ...config import ModelConfig
from ...runtime.graph import INPUT, Builder
from .architecture import decoder_plan

__all__ = ["build_graph"]


def build_graph(cfg: ModelConfig, arrays: dict[str, np.ndarray] | None = None, int8: bool = True) -> onnx.ModelProto:
    """ONNX model of the decoder; with ``arrays`` (from ``/model/decoder``) its weights are included.
    ``int8=False`` builds the float32-weight variant (no DequantizeLinear)."""
    b = Builder(arrays, int8)
    x = INPUT
    for i, layer in enumerate(decoder_plan(cfg)):
        base = f"net.{i}"
        if layer.kind == "conv":
            x = b.conv(x, base, layer.cout)
        elif layer.kind == "act":
            x = b.act(x)
        elif layer.kind == "res":
            y = b.conv(b.act(b.conv(x, base + ".conv1", layer.cout)), base + ".conv2", layer.cout)
            x = b.act(b.node("Add", [x, y]) if layer.residual else y)
        elif layer.mode == "nearest":
            scales = b.const(b.name("scales"), np.array([1, 1, 2, 2], np.float32))
            up = b.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor")  # fmt: skip
            x = b.conv(up, base + ".conv", layer.cout)
        else:
            x = b.node("DepthToSpace", [b.conv(x, base + ".conv", layer.cout * 4)], blocksize=2, mode="CRD")
    x = b.node("Add", [x, b.const("half", np.array(0.5, np.float32))])
    return b.finish(x, "archiver_decoder", TensorProto.FLOAT, [cfg.latent_channels, "h", "w"], INPUT)
