"""Per-image latents of the ``pyramid`` codec at pack time: the encoder's grids, then refinement
through the int8 synthesis (tiled like the runtime), at the trained steps or at those steps times
a quantization gain (``--target-psnr``, ``--max-bytes``: :mod:`archiver.codecs.pyramid.rate`).

A *continuous* latent here is float32 (1, packed_channels, h, w) in units of the trained steps
(gain 1): quantized with gain g it becomes ``round(z / g)``, which the decoder multiplies by g
again (:mod:`archiver.codec.gain`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F

from .net import SYMBOL_CLIP

from ...model.prior import quantize_ste
from .anneal import optimizable
from .model import PyramidCodec, laplace_bits
from .train import PackedSynthesis, pack_torch, unpack_torch
from ...model.refine import refine_latent, stop_at

__all__ = [
    "infer_packed", "padded_image", "encode_continuous", "latent_bits", "refine_continuous", "refine_within",
    "quantize_continuous", "relax_steps", "RelaxedBits",
    "GAIN_LAMBDA_EXPONENT", "RELAX_MIN_LAMBDA", "RELAX_PER_TRIAL",
]  # fmt: skip

#: How the refinement's λ follows a quantization gain g: λ·g^−2.5. The variable-rate base learned
#: steps 1.28× finer per ``--quality`` level for λ 1.87× larger (pyramid-b1, level 0: 2.54 at
#: quality 1 to 0.452 at 8), and ln 1.87 / ln 1.28 = 2.5.
GAIN_LAMBDA_EXPONENT = 2.5
#: Relaxation (see :mod:`archiver.model.refine`) runs before the search only at λ ≥ this
#: (``--quality`` 5 and up): 90 steps lowered the loss by 6.8 % at q8 (λ 0.16), 3.0 % at q6 (λ
#: 0.046), 2.0 % at q5 (λ 0.0245) and 0.3 % at q4 (λ 0.013), where it is not worth 3.7 times the
#: search's time (8 heldout crops, benchmarks/results/refine-headroom-relax.md).
RELAX_MIN_LAMBDA = 0.02
#: Relaxation steps per search trial allowed: 90 before pack's 30 trials (a budget that cuts the
#: trials of a large collection cuts these alike).
RELAX_PER_TRIAL = 3


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
    return _bits(unpack_torch(codec.spec, quantize_ste(v)), _context_of(codec, v))


class RelaxedBits:
    """The bits of a noisy packed latent under the context model of the rounded one (the
    relaxation's rate, see :func:`archiver.model.refine.refine_latent`); the context's means and
    scales are kept between refreshes (they carry no gradient)."""

    def __init__(self, codec: PyramidCodec) -> None:
        self.codec, self.params = codec, None

    def __call__(self, noisy: torch.Tensor, v: torch.Tensor, refresh: bool) -> torch.Tensor:
        if refresh or self.params is None:
            self.params = _context_of(self.codec, v)
        return _bits(unpack_torch(self.codec.spec, noisy), self.params)


def _context_of(codec: PyramidCodec, v: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The context model's (mean, log-scale) per level for the packed latent ``v`` rounded (what
    the decoder has), without gradient."""
    with torch.no_grad():
        return codec.context([torch.round(g) for g in unpack_torch(codec.spec, v.detach())])


def _bits(grids: list[torch.Tensor], params) -> torch.Tensor:
    """Total discretized-Laplace bits of ``grids`` under their (mean, log-scale) ``params``."""
    return sum(laplace_bits(g, mu, ls).sum() for g, (mu, ls) in zip(grids, params))


def relax_steps(lmbda: float, trials: int) -> int:
    """Relaxation steps before ``trials`` search trials at (effective) ``lmbda``: none below
    :data:`RELAX_MIN_LAMBDA`, else :data:`RELAX_PER_TRIAL` per trial."""
    return RELAX_PER_TRIAL * trials if lmbda >= RELAX_MIN_LAMBDA else 0


def refine_continuous(codec: PyramidCodec, synth: PackedSynthesis, padded: torch.Tensor, z: torch.Tensor,
                      valid: tuple[int, int], lmbda: float, refine_steps: int, tile: int, halo: int,
                      gain: float = 1.0, relax: int | None = None) -> torch.Tensor:  # fmt: skip
    """``z`` after at most ``refine_steps`` trials of the integer search of its quantization at
    ``gain`` (λ scaled by :data:`GAIN_LAMBDA_EXPONENT`), in units of the trained steps (integers
    times ``gain``); the search starts after ``relax`` relaxation steps (None: :func:`relax_steps`)."""
    if refine_steps <= 0:
        return z
    for p in codec.context.parameters():
        p.requires_grad_(False)
    scaled = synth if gain == 1.0 else PackedSynthesis(synth.spec, synth.synthesis, synth.steps * gain).eval()
    # An integer search (archiver.model.refine._search), not Adam: at q4 Adam's 30 steps gained
    # 0.09 dB over the encoder's latent, the search 1.2 dB at fewer bits (refine-headroom.md); it
    # starts from z / gain rounded and keeps only moves that lower the loss.
    rate = lambda v: latent_bits(codec, v)  # noqa: E731
    effective = lmbda * gain**-GAIN_LAMBDA_EXPONENT
    relax = relax_steps(effective, refine_steps) if relax is None else relax
    y = refine_latent(optimizable(scaled), padded, z / gain, rate, effective, refine_steps, valid, tile=tile, halo=halo,
                      stride=codec.spec.stride, search=True, relax=relax, relaxed_rate=RelaxedBits(codec))  # fmt: skip
    return y * gain


def refine_within(budget, codec: PyramidCodec, synth: PackedSynthesis, padded: torch.Tensor, z: torch.Tensor,
                  valid: tuple[int, int], lmbda: float, tile: int, halo: int,
                  gain: float = 1.0, relax: int | None = None) -> tuple[torch.Tensor, int]:  # fmt: skip
    """:func:`refine_continuous` for as many steps as ``budget`` (a
    :class:`~archiver.model.refine.RefineBudget`) gives this image, its time recorded there;
    returns the latent and the steps it got. Past the budget's deadline (``--time-limit``) the
    refinement stops, keeping the best latent it has."""
    pixels = valid[0] * valid[1]
    steps, started = budget.steps_for(pixels), time.monotonic()
    with stop_at(budget.stop_time()):
        z = refine_continuous(codec, synth, padded, z, valid, lmbda, steps, tile, halo, gain, relax)
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
