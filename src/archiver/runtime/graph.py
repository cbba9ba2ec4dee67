"""The decoder as an ONNX graph, built from the layer plan with numpy and onnx only (no torch).

Weights stay int8: each convolution reads ``DequantizeLinear(q, scale, 0, axis=0)`` of its int8
initializer, so the graph carries exactly the archive's numbers. The graph ends with the same
``round(clip(x + 0.5, 0, 1) · 255)`` as the torch decoder and outputs uint8 pixels.

The archive stores the graph *without* its initializers (:func:`graph_only`); :func:`attach_weights`
puts the int8 arrays of ``/model/decoder`` back in before a session is created. Only building a
graph (pack time) needs ``onnx``: attaching the weights and folding them to float32 work on the
serialized bytes (:mod:`archiver.runtime.proto`), so reading an archive never imports it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..model import LEAKY_SLOPE
from .proto import INPUT, OPSET, OUTPUT, attach_weights, fold_dequantize

__all__ = ["OPSET", "Builder", "graph_only", "attach_weights", "fold_dequantize", "INPUT", "OUTPUT"]


class Builder:
    """Small helper that appends ONNX nodes and initializers."""

    def __init__(self, arrays: dict[str, np.ndarray] | None, int8: bool = True) -> None:
        self.int8 = int8
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.arrays = arrays
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, base: str, cout: int, k: int = 3) -> str:
        # Weight initializers are named after the archive's arrays (dotted names); values come from
        # attach_weights. Internal constants have names without dots.
        shape = dict(kernel_shape=[k, k], pads=[k // 2] * 4)
        if not self.int8:  # float32 weights (the ablation without int8)
            if self.arrays is not None:
                self.const(base + ".weight", self.arrays[base + ".weight"].astype(np.float32))
                self.const(base + ".bias", self.arrays[base + ".bias"].astype(np.float32))
            return self.node("Conv", [x, base + ".weight", base + ".bias"], **shape)
        if self.arrays is not None:
            self.const(base + ".weight.q", self.arrays[base + ".weight.q"].astype(np.int8))
            self.const(base + ".weight.scale", self.arrays[base + ".weight.scale"].astype(np.float32))
            self.const(base + ".bias", self.arrays[base + ".bias"].astype(np.float32))
        zero = self.const(self.name("zp"), np.zeros(cout, np.int8))
        w = self.node("DequantizeLinear", [base + ".weight.q", base + ".weight.scale", zero], axis=0)
        return self.node("Conv", [x, w, base + ".bias"], **shape)

    def act(self, x: str, slope: float = LEAKY_SLOPE) -> str:
        return self.node("LeakyRelu", [x], alpha=slope)

    def finish(
        self, x: str, name: str, in_type: int, in_shape: list, in_name: str,
        more_inputs: list[onnx.ValueInfoProto] = (),
    ) -> onnx.ModelProto:  # fmt: skip
        """End with ``Cast(Round(Clip(x, 0, 1) · 255))`` to uint8 ``rgb`` and wrap up the model
        (input ``in_name``, then ``more_inputs``)."""
        lo, hi = self.const("zero", np.array(0.0, np.float32)), self.const("one", np.array(1.0, np.float32))
        peak = self.const("peak", np.array(255.0, np.float32))
        x = self.node("Round", [self.node("Mul", [self.node("Clip", [x, lo, hi]), peak])])
        self.nodes.append(helper.make_node("Cast", [x], [OUTPUT], name="to_uint8", to=TensorProto.UINT8))
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(in_name, in_type, ["N", *in_shape]), *more_inputs],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.UINT8, ["N", 3, "H", "W"])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="archiver")
        model.ir_version = 8
        return model


def graph_only(model: onnx.ModelProto) -> bytes:
    """Serialized model without the weight initializers that ``/model/decoder`` already holds."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    keep = [t for t in stripped.graph.initializer if "." not in t.name]
    del stripped.graph.initializer[:]
    stripped.graph.initializer.extend(keep)
    return stripped.SerializeToString()
