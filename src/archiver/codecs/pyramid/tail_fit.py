"""Learning per-image tails (:mod:`archiver.codecs.pyramid.tail`) while a batch's latents are
annealed (:func:`archiver.codecs.pyramid.anneal.anneal_latents`), and deciding which to keep.

Each image of the batch gets its own ``ΔW`` (3, C) and ``Δb`` (3), zero at the start, optimized by
Adam beside its latent (:data:`LR_TAIL`, the same schedule). Their rate is in the loss through a
smooth proxy of their exp-Golomb bits, ``1 + 2·log2(1 + |d| / step)`` per number; in the
straight-through stage they are rounded to the step forward (identity backward), and each image
keeps the tail of its best rounded loss with its latent. At the end an image keeps its tail only
when its rounded loss with the tail's exact bytes is below its loss without one (same latent).
"""

from __future__ import annotations

import torch
from torch import nn

from .tail import TAIL_STEP, encode_tail

__all__ = ["LR_TAIL", "TAIL_MIN_PIXELS", "ImageTails", "TailedSynthesis", "learns_tails"]

#: Adam's first step for the deltas (weight units; the schedule scales it as the latent's): the
#: probe's (benchmarks/per_image_params.py), whose last-layer deltas saved 1.8–2.2 % of the loss at q4.
LR_TAIL = 0.002
#: Fewest pixels an image must have for its tail to be learned. A tail costs some 40–60 bytes
#: (the probe: 0.0008–0.0012 bpp on 0.35 MP photos) for about 2 % of the loss at q4 (~0.36 bpp):
#: it pays from roughly 50,000 pixels; below 2**16 (a 256² image) it is not tried at all.
TAIL_MIN_PIXELS = 1 << 16


def learns_tails(enabled: bool, pixels: int, spec) -> bool:
    """Whether a batch of images of ``pixels`` each learns tails (``enabled``: the pack's
    ``TrainConfig.image_tails``) with the synthesis of ``spec`` (its last 1×1 layer needs a hidden
    layer before it)."""
    return enabled and pixels >= TAIL_MIN_PIXELS and len(spec.hidden) >= 1


class ImageTails(nn.Module):
    """The tails of a batch of ``n`` images being learned: ``dw`` (n, 3, cin), ``db`` (n, 3)."""

    def __init__(self, n: int, cin: int, k: int = TAIL_STEP) -> None:
        super().__init__()
        self.k, self.step = k, 2.0**-k
        self.dw = nn.Parameter(torch.zeros(n, 3, cin))
        self.db = nn.Parameter(torch.zeros(n, 3))
        self.best = (torch.zeros(n, 3, cin), torch.zeros(n, 3))
        #: after the annealing: each image's codec data (empty: no tail kept)
        self.kept: list[bytes] = [b""] * n

    def values(self, quantized: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(ΔW, Δb): rounded to the step forward when ``quantized`` (identity backward)."""
        if not quantized:
            return self.dw, self.db
        return tuple(d + (torch.round(d / self.step) * self.step - d).detach() for d in (self.dw, self.db))  # type: ignore[return-value]

    def proxy_bits(self) -> torch.Tensor:
        """(n,) smooth proxy of each image's tail bits (see the module docstring)."""
        bits = lambda d: (1 + 2 * torch.log2(1 + d.abs() / self.step)).flatten(1).sum(1)  # noqa: E731
        return bits(self.dw) + bits(self.db)

    def keep_best(self, better: torch.Tensor) -> None:
        """Remember the rounded tails of the images in ``better`` (bool (n,)) as their best."""
        with torch.no_grad():
            dw, db = self.values(True)
            mask = better.cpu()
            self.best[0][mask] = dw.cpu()[mask]
            self.best[1][mask] = db.cpu()[mask]

    def restore_best(self) -> None:
        """Set the deltas to each image's best rounded ones."""
        with torch.no_grad():
            self.dw.copy_(self.best[0].to(self.dw.device))
            self.db.copy_(self.best[1].to(self.db.device))

    def data(self, i: int) -> bytes:
        """Image ``i``'s tail as codec data (its current deltas, rounded)."""
        q = torch.cat([self.dw[i].detach().flatten(), self.db[i].detach()]) / self.step
        return encode_tail(torch.round(q).cpu().to(torch.int64).numpy(), self.k)


class TailedSynthesis:
    """An optimizable synthesis (``OptimSynthesis``) run with the batch's tails: rounded when
    ``quantized``, left out when ``on`` is False."""

    def __init__(self, synth, tails: ImageTails) -> None:
        self.synth, self.tails = synth, tails
        self.quantized, self.on = False, True

    def __call__(self, y_hat: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return self.synth(y_hat)
        return self.synth(y_hat, self.tails.values(self.quantized))


def choose_tails(losses, run: TailedSynthesis, y: torch.Tensor, pixels: int) -> None:
    """Set ``run.tails.kept``: each image's tail where its rounded loss with the tail's exact bytes
    (``losses``: the annealing's per-image loss of ``y``, its integer latents) beats none."""
    tails = run.tails
    tails.restore_best()
    run.quantized, run.on = True, False
    without = losses.hard(y)
    run.on = True
    with_tail = losses.hard(y)
    for i in range(len(y)):
        data = tails.data(i)
        cost = 8 * len(data) / pixels
        nonzero = bool(tails.best[0][i].any() or tails.best[1][i].any())
        tails.kept[i] = data if nonzero and float(with_tail[i]) + cost < float(without[i]) else b""
