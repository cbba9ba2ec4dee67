"""The trained pyramid as an archive stores it: the int8 synthesis and its steps, the fixed-point
context network, and the packed synthesis (torch) that computes exactly what the ONNX graph does."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...model.int8 import load_quantized, quantize_weights
from .model import PyramidCodec, PyramidSynthesis
from .net import ContextNet
from .plan import PyramidSpec

__all__ = ["unpack_torch", "pack_torch", "PackedSynthesis", "synthesis_arrays", "context_net", "int8_synthesis"]


def unpack_torch(spec: PyramidSpec, packed: torch.Tensor) -> list[torch.Tensor]:
    """(N, packed_channels, h, w) → the grids, as :func:`archiver.codecs.pyramid.plan.unpack_grids`
    (pixel_shuffle is DepthToSpace in DCR order)."""
    grids = []
    for c, (first, side) in zip(spec.channels, spec.blocks()):
        block = packed[:, first : first + c * side * side]
        grids.append(F.pixel_shuffle(block, side) if side > 1 else block)
    return grids


def pack_torch(spec: PyramidSpec, grids: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`unpack_torch`."""
    return torch.cat([F.pixel_unshuffle(g, side) if side > 1 else g for g, (_, side) in zip(grids, spec.blocks())], 1)


class PackedSynthesis(nn.Module):
    """Packed integer latent (as float) → RGB, the same computation as the ONNX graph."""

    def __init__(self, spec: PyramidSpec, synthesis: PyramidSynthesis, steps: torch.Tensor) -> None:
        super().__init__()
        self.spec, self.synthesis = spec, synthesis
        self.register_buffer("steps", steps)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        grids = unpack_torch(self.spec, packed)
        return self.synthesis([g * self.steps[i] for i, g in enumerate(grids)])


def synthesis_arrays(codec: PyramidCodec, quality: int, scales: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The synthesis' int8 weights (with the given per-channel ``scales``: a base's) and
    ``quant.steps`` (float32 (L,)): what ``/model/decoder`` stores (or its difference from a base)."""
    arrays = quantize_weights(codec.synthesis, scales)
    arrays["quant.steps"] = codec.steps(quality).detach().cpu().numpy().astype(np.float32)
    return arrays


def context_net(codec: PyramidCodec) -> ContextNet:
    """The context model's weights in fixed point (what the coder runs)."""
    phases = []
    for mlp in codec.context.mlps:
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        phases.append([(m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy()) for m in linears])
    return ContextNet.from_float(phases)


def int8_synthesis(codec: PyramidCodec, arrays: dict[str, np.ndarray]) -> PackedSynthesis:
    """The packed synthesis with the int8 weights and steps of ``arrays`` (a new module; ``codec`` is
    unchanged)."""
    synthesis = load_quantized(PyramidSynthesis(codec.spec), {k: v for k, v in arrays.items() if k != "quant.steps"})
    return PackedSynthesis(codec.spec, synthesis, torch.from_numpy(arrays["quant.steps"].copy())).eval()
