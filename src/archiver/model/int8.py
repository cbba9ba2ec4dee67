"""Per-output-channel symmetric int8 quantization of convolution weights (decoder, encoder, denoiser)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..codec.weights import quantize_int8

__all__ = ["quantize_weights", "float_decoder_arrays", "dequantize", "load_quantized"]


def quantize_weights(module: nn.Module, scales: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Arrays that define the int8 version of ``module`` (the decoder, the encoder, the denoiser).

    For every conv weight ``W`` (out, in, kh, kw): ``<name>.q`` int8 = round(W / s) with
    ``<name>.scale`` float32 s = max|W[o]| / 127 per output channel o, or ``scales[<name>.scale]``
    when given (a fine-tuned model coded as its difference from a base keeps the base's scales).
    Biases stay float32 (``<name>`` as is): they are a few hundred numbers and quantizing them buys nothing.
    """
    out: dict[str, np.ndarray] = {}
    for name, tensor in module.state_dict().items():
        array = tensor.detach().cpu().float().numpy()
        if name.endswith(".weight") and array.ndim == 4:
            fixed = None if scales is None else scales[name + ".scale"]
            out[name + ".q"], out[name + ".scale"] = quantize_int8(array, fixed)
        else:
            out[name] = array.astype(np.float32)
    return out


def float_decoder_arrays(decoder: nn.Module) -> dict[str, np.ndarray]:
    """The decoder's weights as float32 arrays under their own names (the int8-off ablation)."""
    return {name: t.detach().cpu().float().numpy() for name, t in decoder.state_dict().items()}


def dequantize(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 state dict (name → array) from the arrays of :func:`quantize_weights`."""
    state: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name.endswith(".q"):
            base = name[: -len(".q")]
            scale = arrays[base + ".scale"].astype(np.float32)
            state[base] = array.astype(np.float32) * scale.reshape(-1, *([1] * (array.ndim - 1)))
        elif not name.endswith(".scale"):
            state[name] = array.astype(np.float32)
    return state


def load_quantized(module: nn.Module, arrays: dict[str, np.ndarray]) -> nn.Module:
    """Load the dequantized int8 weights into ``module`` (in place) and return it."""
    state = {k: torch.from_numpy(v) for k, v in dequantize(arrays).items()}
    module.load_state_dict(state, strict=True)
    return module
