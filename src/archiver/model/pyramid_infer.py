"""Per-image latents of the ``pyramid`` codec at pack time: the encoder's grids, then refinement
through the int8 synthesis (tiled like the runtime), at the trained steps or at those steps times
a quantization gain (``--target-psnr``, ``--max-bytes``: :mod:`archiver.pack_rate`).

A *continuous* latent here is float32 (1, packed_channels, h, w) in units of the trained steps
(gain 1): quantized with gain g it becomes ``round(z / g)``, which the decoder multiplies by g
again (:mod:`archiver.codec.gain`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F

from ..codec.pyramid_net import SYMBOL_CLIP

from .prior import quantize_ste
from .pyramid import PyramidCodec, laplace_bits
from .pyramid_train import PackedSynthesis, pack_torch, unpack_torch
from .refine import refine_latent

__all__ = [
    "infer_packed", "padded_image", "encode_continuous", "latent_bits", "refine_continuous", "refine_within",
    "quantize_continuous",
    "GAIN_LAMBDA_EXPONENT",
]  # fmt: skip

#: How the refinement's λ follows a quantization gain g: λ·g^−2.5. The variable-rate base learned
#: steps 1.28× finer per ``--quality`` level for λ 1.87× larger (pyramid-b1, level 0: 2.54 at
#: quality 1 to 0.452 at 8), and ln 1.87 / ln 1.28 = 2.5.
GAIN_LAMBDA_EXPONENT = 2.5


def padded_image(codec: PyramidCodec, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image (1, 3, H', W') in [0, 1], padded to the stride by replicating its edges, and its
    (height, width)."""
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    height, width = x.shape[-2:]
    s = codec.spec.stride
    ph, pw = -(-height // s) * s, -(-width // s) * s
    return F.pad(x, (0, pw - width, 0, ph - height), mode="replicate"), (height, width)


def encode_continuous(codec: PyramidCodec, rgb: np.ndarray, quality: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(padded image (1, 3, H', W') in [0, 1], its continuous latent from the encoder) and the image's
    (height, width)."""
    padded, valid = padded_image(codec, rgb)
    steps = codec.steps(quality).detach()
    with torch.no_grad():
        grids = codec.encoder(padded)
        z = pack_torch(codec.spec, [g / steps[i] for i, g in enumerate(grids)])
    return (padded, z), valid


def latent_bits(codec: PyramidCodec, v: torch.Tensor) -> torch.Tensor:
    """Bits of the packed latent ``v`` (units of its steps) rounded, under the context model of the
    rounded grids (what the decoder has); the gradient flows to ``v`` through the symbols only."""
    hard = unpack_torch(codec.spec, quantize_ste(v))
    params = codec.context([torch.round(g).detach() for g in hard])
    return sum(laplace_bits(g, mu, ls).sum() for g, (mu, ls) in zip(hard, params))


def refine_continuous(codec: PyramidCodec, synth: PackedSynthesis, padded: torch.Tensor, z: torch.Tensor,
                      valid: tuple[int, int], lmbda: float, refine_steps: int, tile: int, halo: int,
                      gain: float = 1.0) -> torch.Tensor:  # fmt: skip
    """``z`` after at most ``refine_steps`` trials of the integer search of its quantization at
    ``gain`` (λ scaled by :data:`GAIN_LAMBDA_EXPONENT`), in units of the trained steps (integers
    times ``gain``)."""
    if refine_steps <= 0:
        return z
    for p in codec.context.parameters():
        p.requires_grad_(False)
    scaled = synth if gain == 1.0 else PackedSynthesis(synth.spec, synth.synthesis, synth.steps * gain).eval()
    # An integer search (archiver.model.refine._search), not Adam: at q4 Adam's 30 steps gained
    # 0.09 dB over the encoder's latent, the search 1.2 dB at fewer bits (refine-headroom.md); it
    # starts from z / gain rounded and keeps only moves that lower the loss.
    rate = lambda v: latent_bits(codec, v)  # noqa: E731
    y = refine_latent(scaled, padded, z / gain, rate, lmbda * gain ** -GAIN_LAMBDA_EXPONENT, refine_steps, valid,
                      tile=tile, halo=halo, stride=codec.spec.stride, search=True)  # fmt: skip
    return y * gain


def refine_within(budget, codec: PyramidCodec, synth: PackedSynthesis, padded: torch.Tensor, z: torch.Tensor,
                  valid: tuple[int, int], lmbda: float, tile: int, halo: int,
                  gain: float = 1.0) -> tuple[torch.Tensor, int]:  # fmt: skip
    """:func:`refine_continuous` for as many steps as ``budget`` (a
    :class:`~archiver.model.refine.RefineBudget`) gives this image, its time recorded there;
    returns the latent and the steps it got."""
    pixels = valid[0] * valid[1]
    steps, started = budget.steps_for(pixels), time.monotonic()
    z = refine_continuous(codec, synth, padded, z, valid, lmbda, steps, tile, halo, gain)
    budget.done(pixels, steps, time.monotonic() - started)
    return z, steps


def quantize_continuous(z: torch.Tensor | np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Packed integer latent (packed_channels, h, w) int32 of continuous ``z`` at ``gain``."""
    z = torch.as_tensor(z)
    return torch.clamp(torch.round(z / gain), -SYMBOL_CLIP, SYMBOL_CLIP)[0].to(torch.int32).numpy()


def infer_packed(codec: PyramidCodec, synth: PackedSynthesis, rgb: np.ndarray, quality: int, lmbda: float,
                 refine_steps: int, tile: int, halo: int) -> np.ndarray:  # fmt: skip
    """Packed integer latent (packed_channels, h, w) int32 of one image at the trained steps: the
    encoder's grids, then ``refine_steps`` of refinement through the int8 synthesis."""
    (padded, z), valid = encode_continuous(codec, rgb, quality)
    z = refine_continuous(codec, synth, padded, z, valid, lmbda, refine_steps, tile, halo)
    return quantize_continuous(z)
