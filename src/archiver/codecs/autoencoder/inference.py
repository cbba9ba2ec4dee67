"""Latents for one image at pack time and pixels from a latent at extract time (torch, CPU)."""

from __future__ import annotations

import numpy as np
import torch

from ...codec.geometry import STRIDE, tiles
from ...config import ModelConfig
from .model import Decoder, Encoder, pad_to_stride
from ...model.int8 import load_quantized
from ...model.prior import ChannelPrior, quantize_ste
from ...model.refine import refine_latent

__all__ = ["ENCODE_TILE", "ENCODE_HALO", "encode_tiled", "int8_decoder", "decode_latent", "infer_latent", "to_tensor"]

#: Side, in pixels, of the tiles large images are encoded in (a multiple of the stride, 16): memory
#: for activations stays that of a 1.6 Mpx image whatever the photo's size.
ENCODE_TILE = 1024
#: Context, in pixels, each tile sees beyond its own area on every side. The encoder's receptive
#: field reaches 94 px from a latent position's block (5×5 stride-2 convolutions at 1, 1/2, 1/4 and
#: 1/8 scale, a residual block at 1/8 and 1/16, a 3×3 convolution at 1/16), so 128 px of halo gives
#: the whole-image latent (up to float summation order).
ENCODE_HALO = 128


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)


def int8_decoder(cfg: ModelConfig, arrays: dict[str, np.ndarray]) -> Decoder:
    """A CPU decoder in eval mode carrying the dequantized int8 weights of the archive."""
    decoder = Decoder(cfg)
    load_quantized(decoder, arrays)
    return decoder.eval()


def _to_uint8(x_hat: torch.Tensor) -> torch.Tensor:
    return torch.round(x_hat.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


@torch.no_grad()
def decode_latent(decoder: Decoder, latent: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode an integer latent (C, h, w) to (height, width, 3) uint8 pixels (the padding cropped off)."""
    y = torch.from_numpy(latent.astype(np.float32))[None]
    out = _to_uint8(decoder(y))[0, :, :height, :width]
    return out.permute(1, 2, 0).contiguous().numpy()


@torch.no_grad()
def encode_tiled(encoder: Encoder, x: torch.Tensor, tile: int = ENCODE_TILE, halo: int = ENCODE_HALO) -> torch.Tensor:
    """Real-valued latent of a (1, 3, H, W) image padded to the stride, in tiles with a halo."""
    stride = STRIDE
    h, w = x.shape[-2:]
    if h <= tile + 2 * halo and w <= tile + 2 * halo:
        return encoder(x)
    out: torch.Tensor | None = None
    for y0, y1, x0, x1, ya, yb, xa, xb in tiles(h, w, tile, halo):
        part = encoder(x[..., ya:yb, xa:xb])
        if out is None:
            out = part.new_empty((1, part.shape[1], h // stride, w // stride))
        oy, ox = (y0 - ya) // stride, (x0 - xa) // stride
        out[..., y0 // stride : y1 // stride, x0 // stride : x1 // stride] = part[
            ..., oy : oy + (y1 - y0) // stride, ox : ox + (x1 - x0) // stride
        ]
    return out


def infer_latent(
    encoder: Encoder,
    decoder: Decoder,
    prior: ChannelPrior,
    rgb: np.ndarray,
    lmbda: float,
    refine_steps: int = 0,
    min_size: int = 0,
) -> np.ndarray:
    """Integer latent (C, h, w) int32 of one image.

    The encoder gives the starting point; with ``refine_steps`` > 0 the latent is then optimised for
    the rate–distortion loss *through the int8 decoder* (straight-through rounding, tile by tile for
    large images: :func:`archiver.model.refine.refine_latent`), which makes up for part of the error
    that weight quantization added. ``min_size`` is the training crop side:
    smaller images are padded up to it, as they were in training.
    """
    x = to_tensor(rgb)
    height, width = x.shape[-2:]
    padded = pad_to_stride(x, min_size=min_size)
    with torch.no_grad():  # no graph through the encoder: it is not optimised here
        y = encode_tiled(encoder, padded)
    if refine_steps > 0:
        y = refine_latent(
            decoder, padded, y, lambda v: prior.bits(quantize_ste(v)).sum(), lmbda, refine_steps, (height, width)
        )
    return torch.round(y)[0].to(torch.int32).numpy()
