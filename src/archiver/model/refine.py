"""Latent optimisation through a fixed decoder, tile by tile for large images.

Pack's refinement (from the encoder's latent, rate from the trained prior) and append's search (rate
from the archive's integer tables) both minimise ``λ·255²·MSE + bits / pixel`` over a latent, through
the int8 decoder, with straight-through rounding. The backward pass through the decoder holds every
activation of the image it decodes: a few GB for a 24-megapixel photo. So a latent over
:data:`REFINE_TILE` positions a side is optimised one tile at a time, each tile decoded with
:data:`REFINE_HALO` positions of context around it (held fixed). Tiles go in raster order, and each one
sees its already-refined neighbours, so memory stays bounded whatever the image size.

Two ways to optimise a tile: Adam on a continuous latent through straight-through rounding
(:func:`_optimise`, for an encoder's latent at 1/16), or a gradient-guided search over integer latents
(:func:`_search`, for latent grids down to full size): each trial moves the latents with the largest gradients one
quantization step against it and is kept only if the loss falls. On full-size latent grids Adam
moved every latent by about its step size whatever its gradient (Adam normalises it away), so
after a few steps many roundings flipped at once. On 16 heldout crops at q4, 30 Adam steps gained
0.09 dB for 0.9 % more bits over the encoder's latent (on a crop traced step by step, every step
raised the loss and the start was kept); the search gained 1.2 dB at 7.6 % fewer bits
(benchmarks/results/refine-headroom.md).

At high rates the search can start from a relaxed latent (:func:`_relax`): Adam on the continuous
latent with additive uniform noise standing in for rounding, in the decoder's input and in the
rate alike (the loss is then smooth, so Adam's normalised steps do no harm), its step annealed to
0; the search then starts from the rounded result, or from the rounded start where that is better.
On 8 heldout crops (no collection fine-tuning), 90 relaxation steps before 30 search trials
lowered the loss λ·255²·MSE + bpp by 6.8 % at q8 (+0.90 dB for +3.4 % bits), 3.0 % at q6, 2.0 % at
q5 and 0.3 % at q4, for 3.7 times the search's time (benchmarks/results/refine-headroom-relax.md):
see the codec's ``RELAX_MIN_LAMBDA``. In a prototype, 300 steps instead of
100 took the gain over q2–q8 from −2.6 % to −6.4 % BD-rate at three times the time.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch

from torch import nn
from .prior import quantize_ste

__all__ = ["REFINE_TILE", "REFINE_HALO", "REFINE_LR", "RELAX_LR", "refine_latent", "RefineBudget", "stop_at"]

#: Latent positions per tile side (512 px at stride 16). Larger latents are refined tile by tile.
REFINE_TILE = 32
#: Latent positions of fixed context around a tile: more than the decoder's receptive radius
#: (about 5 positions; the same margin the ONNX runtime decodes tiles with).
REFINE_HALO = 6
#: Adam step, in quantization steps, when starting from the encoder's latent (already close).
REFINE_LR = 0.02
#: The integer search's first trial moves this fraction of a tile's latents; after a kept trial the
#: fraction grows by SEARCH_GROWTH (to at most SEARCH_MAX_FRACTION), after a rejected one it halves,
#: and the search ends when a trial would move less than one latent. On 4 heldout crops at q4 and
#: q8 a first fraction of 0.05 (growth 2, at most 0.3) and restarts after the end found the same
#: losses within 0.4 %.
SEARCH_FRACTION = 0.02
SEARCH_GROWTH = 1.5
SEARCH_MAX_FRACTION = 0.2
#: The relaxation's Adam step, in quantization steps, annealed to 0 by a cosine. In the prototype
#: (8 heldout crops, 100 steps, BD-rate q2–q8 against the search alone): 0.1 −2.6 %, 0.3 −2.3 %,
#: 1.0 +18.1 % (it moved the points far along the curve).
RELAX_LR = 0.1
#: The relaxation recomputes the context model's means and scales (of the rounded latent, no
#: gradient) every this many steps: in the prototype 27 % less time than every step, for +0.7 %
#: bits at q4 and +0.4 % at q8 at the same PSNR within 0.02 dB.
RELAX_REFRESH = 10

from ..codec.geometry import STRIDE, tiles

#: When refinement must stop (``time.monotonic()``; None: never), set by :func:`stop_at`.
_STOP_AT: ContextVar[float | None] = ContextVar("archiver_refine_stop_at", default=None)


@contextmanager
def stop_at(deadline: float | None) -> Iterator[None]:
    """Refinement inside the block stops once ``time.monotonic()`` passes ``deadline`` (None: never):
    no further tile, trial or step starts, and each tile keeps the best latent it has (pack's
    ``--time-limit``, :meth:`RefineBudget.stop_time`)."""
    token = _STOP_AT.set(deadline)
    try:
        yield
    finally:
        _STOP_AT.reset(token)


def _stopped() -> bool:
    at = _STOP_AT.get()
    return at is not None and time.monotonic() >= at


def refine_latent(
    decoder: nn.Module,
    target: torch.Tensor,
    y: torch.Tensor,
    rate: Callable[[torch.Tensor], torch.Tensor],
    lmbda: float,
    steps: int,
    valid: tuple[int, int],
    *,
    lr: float = REFINE_LR,
    clamp: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cosine: bool = False,
    tile: int = REFINE_TILE,
    halo: int = REFINE_HALO,
    stride: int = STRIDE,
    search: bool = False,
    relax: int = 0,
    relaxed_rate: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The float latent (1, C, h, w) after ``steps`` Adam steps per tile, starting from ``y``; with
    ``search``, the integer latent after at most ``steps`` trials of :func:`_search` per tile,
    starting from ``y`` rounded (``lr``, ``clamp`` and ``cosine`` are then unused), or from
    ``y`` after ``relax`` steps of :func:`_relax` when that is better.

    ``target`` is the padded image (1, 3, stride·h, stride·w) in [0, 1]; the distortion counts only its first
    ``valid`` = (height, width) pixels (the rest is padding). ``rate`` gives the total bits of a
    continuous latent (its own rounding or interpolation included); ``relaxed_rate(noisy, v,
    refresh)`` the bits of ``noisy`` = ``v`` + uniform noise under the context of ``v`` rounded,
    that context recomputed only when ``refresh``; ``clamp`` keeps the latent
    inside a support after every step; ``cosine`` anneals the step size to 0 over ``steps``.
    Each tile keeps the best latent it saw, so refinement never makes a tile's loss worse.
    """
    for p in decoder.parameters():
        p.requires_grad_(False)
    out = y.detach().clone()
    if steps <= 0:
        return out
    h, w = out.shape[-2:]
    for y0, y1, x0, x1, ya, yb, xa, xb in tiles(h, w, tile, halo):
        if _stopped():
            break  # the rest of the tiles keep their start
        context = out[..., ya:yb, xa:xb]
        pixels = target[..., ya * stride : yb * stride, xa * stride : xb * stride]
        # The tile's own pixels that are image, not padding, in the crop's coordinates.
        box = (
            (y0 - ya) * stride, min(y1 * stride, valid[0]) - ya * stride,
            (x0 - xa) * stride, min(x1 * stride, valid[1]) - xa * stride,
        )  # fmt: skip
        centre = (y0 - ya, y1 - ya, x0 - xa, x1 - xa)
        loss_of = _tile_loss(decoder, pixels, context, centre, box, rate, lmbda)
        start = context[..., centre[0] : centre[1], centre[2] : centre[3]]
        if search:
            continuous, start = start, torch.round(start)
            if relax > 0 and relaxed_rate is not None:
                noisy_of = _tile_loss(decoder, pixels, context, centre, box, relaxed_rate, lmbda, noisy=True)
                relaxed = torch.round(_relax(noisy_of, continuous, relax))
                with torch.no_grad():
                    if loss_of(relaxed).item() < loss_of(start).item():
                        start = relaxed
            out[..., y0:y1, x0:x1] = _search(loss_of, start, steps)
        else:
            out[..., y0:y1, x0:x1] = _optimise(loss_of, start, steps, lr, clamp, cosine)
    return out


def _tile_loss(decoder, pixels, context, centre, box, rate, lmbda, noisy: bool = False) -> Callable[..., torch.Tensor]:
    """The loss of a tile's ``centre`` latents as a function of them: λ·255²·MSE inside ``box``
    (the tile's own image pixels) plus their bits per pixel, the rest of ``context`` held fixed.
    With ``noisy`` the latents get uniform noise instead of rounding (decoder and ``rate(noisy, v,
    refresh)`` alike) and the function takes ``refresh`` (see :func:`refine_latent`)."""
    cy0, cy1, cx0, cx1 = centre
    py0, py1, px0, px1 = box
    count = max(1, (py1 - py0) * (px1 - px0))
    whole = context.shape[-2:] == (cy1 - cy0, cx1 - cx0)

    def loss_of(v: torch.Tensor, refresh: bool = True) -> torch.Tensor:
        coded = v + torch.empty_like(v).uniform_(-0.5, 0.5) if noisy else v
        if whole:
            latent = coded
        else:
            latent = context.clone()
            latent[..., cy0:cy1, cx0:cx1] = coded
        x_hat = decoder(latent if noisy else quantize_ste(latent))  # the context is integers already
        mse = torch.mean((x_hat[..., py0:py1, px0:px1] - pixels[..., py0:py1, px0:px1]) ** 2)
        bits = rate(coded, v, refresh) if noisy else rate(v)
        return lmbda * 255.0**2 * mse + bits / count

    return loss_of


def _relax(noisy_of, start: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` Adam steps on the continuous latent ``start`` for the noisy loss ``noisy_of``,
    the step (:data:`RELAX_LR`) annealed to 0 by a cosine; the last latent."""
    var = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([var], lr=RELAX_LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for step in range(steps):
        if _stopped():
            break
        loss = noisy_of(var, step % RELAX_REFRESH == 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return var.detach()


def _search(loss_of, y: torch.Tensor, steps: int) -> torch.Tensor:
    """Gradient-guided search over integer latents from ``y`` (integers): each trial moves the
    fraction of latents with the largest loss gradients by one step against the gradient and is
    kept only if the loss falls (see :data:`SEARCH_FRACTION`); at most ``steps`` trials."""
    var = y.clone().requires_grad_(True)
    loss = loss_of(var)
    loss.backward()
    best, grad = loss.item(), var.grad
    fraction = SEARCH_FRACTION
    for _ in range(steps):
        k = int(fraction * y.numel())
        if k < 1 or _stopped():
            break
        at = torch.topk(grad.abs().flatten(), k).indices
        trial = y.flatten().clone()
        trial[at] -= torch.sign(grad.flatten()[at])
        var = trial.reshape(y.shape).detach().requires_grad_(True)
        loss = loss_of(var)
        if loss.item() < best:  # kept: its gradient guides the next trial
            loss.backward()
            y, best, grad = var.detach(), loss.item(), var.grad
            fraction = min(fraction * SEARCH_GROWTH, SEARCH_MAX_FRACTION)
        else:
            fraction /= 2
    return y


def _optimise(loss_of, start: torch.Tensor, steps, lr, clamp, cosine) -> torch.Tensor:
    """Adam on the continuous latents ``start`` for ``loss_of``; the best latent seen."""
    var = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([var], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    best, best_loss = var.detach().clone(), float("inf")

    for step in range(steps + 1):
        loss = loss_of(var)
        # Straight-through steps can overshoot: the latent kept is the best one seen (the last one
        # included), never worse than where the tile started.
        if loss.item() < best_loss:
            best, best_loss = var.detach().clone(), loss.item()
        if step == steps or _stopped():
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if clamp is not None:
            with torch.no_grad():
                var.copy_(clamp(var))
    return best


class RefineBudget:
    """Refinement steps per image so that a whole collection is refined within ``seconds``.

    Refinement costs about the same per pixel and step whatever the image, so after each image the
    measured seconds per pixel-step give the steps the remaining pixels can afford: every remaining
    image gets ``floor(time left / (cost × pixels left))`` steps, at most ``max_steps``. A collection
    that fits gets ``max_steps`` everywhere; a huge one gets fewer steps, spread evenly, instead of
    making pack take many times its training time.

    ``cost`` (seconds per pixel-step, None: unknown) prices the first image before any is measured,
    within :data:`SHARE_CAP` times its pixel share of the time; without it the first image gets
    ``max_steps``. ``deadline`` (``time.monotonic()``, None: none) is when the loop over the
    collection must end, the work between refinements included: the time left is then also at most
    the deadline less what that other work has cost per pixel so far, times the pixels left (before
    any image is done: ``other`` seconds, the caller's estimate for the whole collection; pack's
    ``--time-limit``, :mod:`archiver.time_budget`), and each image stops refining (:meth:`stop_time`)
    once it has taken :data:`SHARE_CAP` times its share; one stopped so counts half its steps, so
    that the next ones are priced higher.
    """

    #: How many times its pixel share of the time left an image may take, with a deadline.
    SHARE_CAP = 2.0

    def __init__(self, max_steps: int, seconds: float, pixels: int, *, cost: float | None = None,
                 deadline: float | None = None, other: float = 0.0) -> None:  # fmt: skip
        self.max_steps, self.seconds, self.pixels_left = max_steps, seconds, pixels
        self.pixels = pixels
        self.spent = 0.0  # seconds
        self.pixel_steps = 0  # pixels × steps refined so far
        self.steps_given: list[int] = []
        self.cost, self.deadline, self.started, self.other = cost, deadline, time.monotonic(), other
        self._stop: float | None = None

    def time_left(self) -> float:
        """Seconds of refinement the rest of the collection may still take."""
        left = self.seconds - self.spent
        if self.deadline is not None:
            now, done = time.monotonic(), self.pixels - self.pixels_left
            other = max(now - self.started - self.spent, 0.0) / done * self.pixels_left if done > 0 else self.other
            left = min(left, self.deadline - now - other)
        return left

    def stop_time(self) -> float | None:
        """When the image :meth:`steps_for` last priced must stop refining, whatever its steps (for
        :func:`stop_at`): once the time left for the collection is spent; None without a deadline."""
        return self._stop

    def steps_for(self, pixels: int) -> int:
        """Steps for the next image of ``pixels`` pixels."""
        left = self.time_left()
        share = self._capped_share(pixels, left)
        if self.max_steps <= 0 or left <= 0:
            steps = 0
        elif self.pixel_steps:  # seconds per pixel-step, measured
            steps = math.floor(left / (self.spent / self.pixel_steps * max(self.pixels_left, 1)))
        elif self.cost is not None:  # priced before any is measured
            steps = math.floor(share / (self.cost * max(pixels, 1)))
        else:
            steps = self.max_steps  # the first image measures the cost
        self.steps_given.append(min(steps, self.max_steps))
        return self.steps_given[-1]

    def done(self, pixels: int, steps: int, seconds: float) -> None:
        """Record an image's refinement: ``seconds`` it took for ``steps`` steps over ``pixels`` pixels."""
        stopped = self._stop is not None and time.monotonic() >= self._stop
        self.pixels_left -= pixels
        if steps > 0:
            self.spent += seconds
            self.pixel_steps += pixels * steps * (0.5 if stopped else 1)

    def _capped_share(self, pixels: int, left: float) -> float:
        """Seconds the next ``pixels`` may take at most of ``left``: :data:`SHARE_CAP` times their
        pixel share; with a deadline, also when they must stop (:meth:`stop_time`)."""
        share = max(left, 0.0) * min(1.0, self.SHARE_CAP * pixels / max(self.pixels_left, 1))
        self._stop = time.monotonic() + share if self.deadline is not None else None
        return share

    def fair_share(self, pixels: int) -> float:
        """Seconds of what is left that are the next ``pixels``' pixel share: what another optimizer
        (a codec's own) prices its steps with before it :meth:`spend` s them. Sets their stop time
        as :meth:`steps_for` does."""
        left = self.time_left()
        self._capped_share(pixels, left)
        return max(left, 0.0) * min(1.0, pixels / max(self.pixels_left, 1))

    def spend(self, pixels: int, seconds: float) -> None:
        """Record ``pixels`` optimized in ``seconds`` by another optimizer: the time is spent, the
        search's measured cost per pixel-step is not changed."""
        self.pixels_left -= pixels
        self.spent += seconds

    def summary(self) -> dict:
        """JSON-able: the cap, the budget (s), seconds spent and the steps the searched images got
        (none searched: the cap, nothing was cut)."""
        given = self.steps_given or [self.max_steps]
        return {"max_steps": self.max_steps, "budget_seconds": round(self.seconds, 3), "seconds": round(self.spent, 3),
                "mean_steps": sum(given) / len(given), "min_steps": min(given), "searched": len(self.steps_given)}  # fmt: skip
