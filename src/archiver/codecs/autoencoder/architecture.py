"""The decoder's layer sequence as plain data (no torch), shared by the torch model and the ONNX graph.

Both :class:`archiver.codecs.autoencoder.model.Decoder` and :mod:`archiver.runtime.graph` are built from
:func:`decoder_plan`, so the weight names in an archive (``net.<index>.…``) mean the same layers in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ModelConfig

__all__ = ["Layer", "decoder_plan", "decoder_macs_per_pixel", "decoder_params", "LEAKY_SLOPE"]

from ...model import LEAKY_SLOPE  # noqa: E402  (the shared slope, re-exported)


@dataclass(frozen=True)
class Layer:
    """One entry of the decoder's ``net`` Sequential.

    kind: ``conv`` (3×3, weights ``net.i.weight/bias``), ``act`` (LeakyReLU), ``res`` (ResBlock:
    ``net.i.conv1``, ``net.i.conv2``; ``residual`` says if the input is added back), ``up`` (×2
    upsampling then conv, weights ``net.i.conv``; ``mode`` is ``nearest`` or ``shuffle``).
    """

    kind: str
    cin: int = 0
    cout: int = 0
    residual: bool = True
    mode: str = ""


def decoder_plan(cfg: ModelConfig) -> list[Layer]:
    """Layers of the decoder for ``cfg``, in order (the output is then offset by +0.5)."""
    w16, w8, w4, w2 = cfg.widths
    act = Layer("act")
    plan = [Layer("conv", cfg.latent_channels, w16), act]
    if cfg.res_blocks >= 1:
        plan.append(Layer("res", w16, w16, cfg.residual))
    plan += [Layer("up", w16, w8, mode=cfg.upsample), act]
    if cfg.res_blocks >= 2:
        plan.append(Layer("res", w8, w8, cfg.residual))
    plan += [Layer("up", w8, w4, mode=cfg.upsample), act]
    plan += [Layer("up", w4, w2, mode=cfg.upsample), act]
    plan += [Layer("up", w2, w2, mode=cfg.upsample), act]
    plan.append(Layer("conv", w2, 3))
    return plan


def decoder_macs_per_pixel(cfg: ModelConfig) -> float:
    """Multiply–accumulates of the decoder per output pixel (convolutions only; activations are free).

    A 3×3 convolution costs cin·cout·9 MAC per position of the resolution it runs at; the latent is at
    1/16 of each side and every ``up`` layer doubles it (``shuffle`` convolves at the lower resolution
    into 4·cout channels, ``nearest`` at the higher one into cout: the same count).
    """
    scale = 1.0 / cfg.stride**2  # positions per output pixel at the current resolution
    total = 0.0
    for layer in decoder_plan(cfg):
        if layer.kind == "conv":
            total += layer.cin * layer.cout * 9 * scale
        elif layer.kind == "res":
            total += 2 * layer.cin * layer.cout * 9 * scale
        elif layer.kind == "up":
            scale *= 4
            total += layer.cin * layer.cout * 9 * scale
    return total


def decoder_params(cfg: ModelConfig) -> int:
    """Number of decoder weights and biases (≈ its bytes in the archive: int8 weights)."""
    total = 0
    for layer in decoder_plan(cfg):
        if layer.kind == "conv":
            total += layer.cin * layer.cout * 9 + layer.cout
        elif layer.kind == "res":
            total += 2 * (layer.cin * layer.cout * 9 + layer.cout)
        elif layer.kind == "up":
            k = 4 if layer.mode == "shuffle" else 1
            total += layer.cin * layer.cout * 9 * k + layer.cout * k
    return total
