"""Joint optimization of a collection's latents and its decoder: pack's training at high ``--quality``.

Pack's usual route fine-tunes the encoder, synthesis and context network on random crops, then
moves each image's latent alone through the fixed decoder (relaxation, then the integer search:
:mod:`archiver.model.refine`). At high λ the latents move far from what the encoder gave, and the
decoder never sees where they went. Here every image's continuous latent is a parameter, started
from the base's encoder, and optimized together with the synthesis and context network on aligned
crops of the collection, the way a per-image overfitted codec (Cool-chic, C3) optimizes its latents
and networks together; the encoder is not trained at all (it is not stored). Pack then runs the
integer search from these latents through the final int8 synthesis.

Measured on 64 heldout dataset crops of 128² at ``--quality`` 8 from base pyramid-b3 (real coder's
bits and int8 synthesis after the search; loss λ·255²·MSE + bpp): the usual route with 77 s of
fine-tuning, then relaxation and search (116 s) 3.440; joint for 77 s, then the search (30 s)
3.434; joint for 160 s, then the search (31 s) **3.331** (−3.2 % at the same total time: 39.74 dB
at 2.228 bpp against 38.94 dB at 2.111). At ``--quality`` 4 (no relaxation) it did not pay: 1.439
against 1.430, so pack uses it only where it relaxes (:data:`archiver.model.pyramid_infer.RELAX_MIN_LAMBDA`).
Variants tried there at 90 s: crops of 32 instead of 8 per step, the latents' step 0.2, and
straight-through rounding from the start were no better (within +0.1 … +1.7 %).

Each step draws :data:`JOINT_BATCH` crops of :data:`JOINT_CROP` pixels, images in proportion to
their pixels, at multiples of the coarsest grid's cell so that a crop's latent is whole cells. The
synthesis sees the latents plus uniform noise for the first half of the time, then rounded
(straight-through); the rate is that of the noisy latents under the context of the rounded ones,
as in training. The latents' step (:data:`JOINT_LATENT_LR`, quantization steps) and the networks'
(:data:`JOINT_NET_LR`) are annealed to 0 by a cosine over the time. Memory: about 20 bytes a pixel
(the latents, Adam's two moments, the pixels), so collections above :data:`JOINT_PIXELS` take the
usual route.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from .pyramid import PyramidCodec, laplace_bits
from .pyramid_infer import padded_image
from .pyramid_train import pack_torch, unpack_torch
from .training import TrainProgress

__all__ = ["JointLatents", "joint_optimize", "JOINT_PIXELS", "JOINT_CROP", "JOINT_BATCH"]

#: Largest collection, in pixels, optimized jointly (about 20 bytes a pixel: 480 MB).
JOINT_PIXELS = 24_000_000
#: Crop side in pixels (smaller images give smaller crops: a multiple of the coarsest cell).
JOINT_CROP = 64
#: Crops per step.
JOINT_BATCH = 8
#: Adam's first step for the latents, in quantization steps (the relaxation's: 0.1; 0.2 was worse).
JOINT_LATENT_LR = 0.1
#: Adam's first step for the synthesis and context network (pack's fine-tuning rate).
JOINT_NET_LR = 2e-4
#: Fraction of the time during which the synthesis sees noisy latents instead of rounded ones.
JOINT_NOISE_FRACTION = 0.5


class JointLatents:
    """Every image's padded pixels (uint8) and continuous packed latent (a parameter), with the
    crops a step draws."""

    def __init__(self, codec: PyramidCodec, images: list[np.ndarray], quality: int, seed: int) -> None:
        spec, s = codec.spec, codec.spec.stride
        steps = codec.steps(quality).detach()
        self.pixels: list[torch.Tensor] = []  # (3, H', W') uint8
        self.valid: list[tuple[int, int]] = []
        self.latents: list[torch.Tensor] = []  # (1, C, H'/s, W'/s) float32, requires grad
        for rgb in images:
            padded, valid = padded_image(codec, rgb)
            with torch.no_grad():
                z = pack_torch(spec, [g / steps[i] for i, g in enumerate(codec.encoder(padded))])
            self.pixels.append(torch.round(padded[0] * 255.0).to(torch.uint8))
            self.valid.append(valid)
            self.latents.append(z.requires_grad_(True))
        self.stride = s
        smallest = min(min(p.shape[-2:]) for p in self.pixels)
        self.crop = max(s, min(JOINT_CROP, smallest // s * s))
        cells = np.array([(p.shape[-2] // s) * (p.shape[-1] // s) for p in self.pixels], dtype=np.float64)
        self.weights = cells / cells.sum()
        self.rng = np.random.default_rng([seed, 0x101])
        self.summary: dict = {}  #: what :func:`joint_optimize` returned (pack's training summary records it)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixels (n, 3, c, c) in [0, 1], their latents (n, C, c/s, c/s) with gradient to the
        parameters, mask (n, 1, c, c): 1 on pixels of the image, 0 on its padding)."""
        s, c = self.stride, self.crop
        xs, zs, ms = [], [], []
        for k in self.rng.choice(len(self.pixels), size=n, p=self.weights):
            p, z, (h, w) = self.pixels[k], self.latents[k], self.valid[k]
            i = int(self.rng.integers(0, (p.shape[-2] - c) // s + 1)) * s
            j = int(self.rng.integers(0, (p.shape[-1] - c) // s + 1)) * s
            xs.append(p[:, i : i + c, j : j + c])
            zs.append(z[0, :, i // s : (i + c) // s, j // s : (j + c) // s])
            rows = (torch.arange(i, i + c) < h).view(-1, 1)
            cols = (torch.arange(j, j + c) < w).view(1, -1)
            ms.append((rows & cols)[None])
        return torch.stack(xs).float().div_(255.0), torch.stack(zs), torch.stack(ms).float()

    def continuous(self, k: int) -> torch.Tensor:
        """Image ``k``'s latent (1, C, h, w), detached."""
        return self.latents[k].detach()


def joint_optimize(codec: PyramidCodec, joint: JointLatents, quality: int, lmbda: float, seconds: float,
                   progress: Callable[[TrainProgress], None] | None = None, max_steps: int | None = None,
                   model_bpp=None, report_every: int = 10) -> dict:  # fmt: skip
    """Optimize ``joint``'s latents with ``codec``'s synthesis and context network for ``seconds``
    (or ``max_steps``); the encoder and the quantization steps stay. ``model_bpp(codec)``: the
    model's own bits per coded pixel, added to the loss. Returns a summary: steps, seconds, and the
    mean loss, PSNR (of the mean MSE) and bpp of the last tenth of the steps."""
    nets = list(codec.synthesis.parameters()) + list(codec.context.parameters())
    for p in codec.parameters():
        p.requires_grad_(False)
    for p in nets:
        p.requires_grad_(True)
    net_opt = torch.optim.Adam(nets, lr=JOINT_NET_LR)
    latent_opt = torch.optim.Adam(joint.latents, lr=JOINT_LATENT_LR)
    steps = codec.steps(quality).detach()
    log: list[tuple[float, float, float]] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds and len(log) < (max_steps or math.inf):
        frac = elapsed / seconds
        anneal = 0.5 * (1.0 + math.cos(math.pi * frac))
        net_opt.param_groups[0]["lr"], latent_opt.param_groups[0]["lr"] = JOINT_NET_LR * anneal, JOINT_LATENT_LR * anneal
        x, z, mask = joint.batch(JOINT_BATCH)
        loss, mse, bpp = _loss(codec, steps, x, z, mask, lmbda, noisy_synthesis=frac < JOINT_NOISE_FRACTION)
        if model_bpp is not None:
            loss = loss + model_bpp(codec)
        net_opt.zero_grad(set_to_none=True)
        latent_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(nets, 1.0)
        net_opt.step()
        latent_opt.step()
        log.append((float(loss.item()), float(mse.item()), float(bpp.item())))
        if progress is not None and (len(log) % report_every == 0 or len(log) == 1):
            psnr = 10 * math.log10(1.0 / max(log[-1][1], 1e-10))
            progress(TrainProgress(len(log), log[-1][0], psnr, log[-1][2], elapsed, seconds - elapsed, net_opt.param_groups[0]["lr"]))
    for p in codec.parameters():
        p.requires_grad_(True)
    return _summary(log, time.monotonic() - started)


def _loss(codec: PyramidCodec, steps: torch.Tensor, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
          lmbda: float, noisy_synthesis: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(λ·255²·MSE + bpp, MSE, bpp) of one batch; MSE and bpp per pixel of the images (not padding)."""
    grids = unpack_torch(codec.spec, z)
    noisy = [g + torch.empty_like(g).uniform_(-0.5, 0.5) for g in grids]
    seen = noisy if noisy_synthesis else [g + (torch.round(g) - g).detach() for g in grids]
    x_hat = codec.synthesis([g * steps[i] for i, g in enumerate(seen)])
    pixels = mask.sum().clamp_min(1.0)
    mse = (((x_hat - x) ** 2) * mask).sum() / (3.0 * pixels)
    params = codec.context([torch.round(g).detach() for g in grids])
    bits = sum(laplace_bits(r, mu, ls).sum() for r, (mu, ls) in zip(noisy, params))
    bpp = bits / pixels
    return lmbda * 255.0**2 * mse + bpp, mse, bpp


def _summary(log: list[tuple[float, float, float]], seconds: float) -> dict:
    out: dict = {"steps": len(log), "seconds": round(seconds, 3)}
    if log:
        loss, mse, bpp = (float(np.mean(v)) for v in zip(*log[-max(1, len(log) // 10) :]))
        out["last"] = {"loss": round(loss, 5), "psnr": round(10 * math.log10(1.0 / max(mse, 1e-12)), 3), "bpp": round(bpp, 5)}
    return out
