"""Tiled latent refinement: bounded decoder inputs, and close to refining the whole latent at once."""

import numpy as np
import torch

from archiver.config import ModelConfig
from archiver.codecs.autoencoder.model import Autoencoder, pad_to_stride
from archiver.codecs.autoencoder.inference import to_tensor
from archiver.model.prior import ChannelPrior, quantize_ste
from archiver.model.refine import refine_latent
from conftest import smooth_image

SMALL = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)


class Recording(torch.nn.Module):
    """The decoder, noting the latent shape of every call."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder, self.shapes = decoder, []

    def forward(self, y):
        self.shapes.append(tuple(y.shape[-2:]))
        return self.decoder(y)


def _setup(h=150, w=200):
    torch.manual_seed(0)
    model = Autoencoder(SMALL).eval()
    prior = ChannelPrior(8)
    x = to_tensor(smooth_image(np.random.default_rng(3), w, h))
    padded = pad_to_stride(x)
    with torch.no_grad():
        y = model.encoder(padded)
    return model, prior, padded, y, (h, w)


def _loss(decoder, prior, padded, latent, valid, lmbda=0.05):
    h, w = valid
    with torch.no_grad():
        q = torch.round(latent)
        mse = torch.mean((decoder(q)[..., :h, :w] - padded[..., :h, :w]) ** 2).item()
        return lmbda * 255**2 * mse + prior.bits(q).sum().item() / (h * w)


def test_tiles_bound_the_decoder_input_and_match_whole_refinement():
    model, prior, padded, y, valid = _setup()  # latent 10 × 13 positions
    rate = lambda v: prior.bits(quantize_ste(v)).sum()  # noqa: E731
    recorder = Recording(model.decoder)
    tiled = refine_latent(recorder, padded, y, rate, 0.05, 20, valid, lr=0.1, tile=4, halo=2)
    assert max(s[0] for s in recorder.shapes) <= 4 + 2 * 2 and max(s[1] for s in recorder.shapes) <= 8
    assert len(recorder.shapes) == 21 * 3 * 4  # 3 × 4 tiles, 20 steps each and the last latent measured
    whole = refine_latent(model.decoder, padded, y, rate, 0.05, 20, valid, lr=0.1)
    start, t, w = (_loss(model.decoder, prior, padded, v, valid) for v in (y, tiled, whole))
    assert t < start and w < start
    assert (start - t) > 0.7 * (start - w), (start, t, w)  # tiles get most of the whole image's gain


def test_zero_steps_and_clamp():
    model, prior, padded, y, valid = _setup(40, 40)
    rate = lambda v: prior.bits(quantize_ste(v)).sum()  # noqa: E731
    assert torch.equal(refine_latent(model.decoder, padded, y, rate, 0.05, 0, valid), y)
    clamped = refine_latent(model.decoder, padded, y, rate, 0.05, 5, valid, clamp=lambda v: v.clamp(-1, 1))
    assert clamped.abs().max().item() <= 1.0


def test_never_ends_worse_than_it_started():
    model, prior, padded, y, valid = _setup(40, 40)
    rate = lambda v: prior.bits(quantize_ste(v)).sum()  # noqa: E731
    recorder = Recording(model.decoder)
    refine_latent(recorder, padded, y, rate, 0.05, 12, valid)
    assert len(recorder.shapes) == 13  # every step, and the last latent measured too
    wild = refine_latent(model.decoder, padded, y, rate, 0.05, 10, valid, lr=50.0)  # overshoots
    assert _loss(model.decoder, prior, padded, wild, valid) <= _loss(model.decoder, prior, padded, y, valid) + 1e-6


def test_budget_spreads_the_steps_that_fit():
    from archiver.model.refine import RefineBudget

    fits = RefineBudget(30, 100.0, 1000)
    for _ in range(10):
        steps = fits.steps_for(100)
        fits.done(100, steps, 0.3)  # 0.1 ms a pixel-step: 30 steps of 100 px fit 33 times over
    assert fits.steps_given == [30] * 10 and fits.summary()["mean_steps"] == 30

    tight = RefineBudget(30, 10.0, 1000)
    assert tight.steps_for(100) == 30  # the first image measures the cost
    tight.done(100, 30, 3.0)  # 1 ms a pixel-step
    assert tight.steps_for(100) == 7  # 7 s left for 900 px: 7 steps each
    tight.done(100, 7, 0.7)
    assert tight.steps_for(100) == 7
    tight.done(100, 7, 5.0)  # slower than predicted: the budget is spent
    assert tight.steps_for(100) == 0 and tight.summary()["min_steps"] == 0
    assert RefineBudget(0, 10.0, 100).steps_for(100) == 0


def test_search_gives_integers_that_lower_the_loss_tile_by_tile():
    """The integer search (the pyramid's refinement): integer latents, a lower loss than the rounded
    start in tiles as in one piece, never more decoder inputs than a tile with its context, and no
    more than ``steps`` trials (plus the start) per tile."""
    model, prior, padded, y, valid = _setup()  # latent 10 × 13 positions
    rate = lambda v: prior.bits(quantize_ste(v)).sum()  # noqa: E731
    recorder = Recording(model.decoder)
    tiled = refine_latent(recorder, padded, y, rate, 0.05, 15, valid, tile=4, halo=2, search=True)
    whole = refine_latent(model.decoder, padded, y, rate, 0.05, 15, valid, search=True)
    assert torch.equal(tiled, torch.round(tiled)) and torch.equal(whole, torch.round(whole))
    assert max(s[0] for s in recorder.shapes) <= 8 and max(s[1] for s in recorder.shapes) <= 8
    assert len(recorder.shapes) <= 16 * 3 * 4
    start = _loss(model.decoder, prior, padded, torch.round(y), valid)
    t, w = (_loss(model.decoder, prior, padded, v, valid) for v in (tiled, whole))
    assert t < start and w < start, (start, t, w)
    # a latent far from the image: the search keeps finding moves that pay
    far = refine_latent(model.decoder, padded, y + 3.0, rate, 0.05, 30, valid, search=True)
    assert _loss(model.decoder, prior, padded, far, valid) < _loss(model.decoder, prior, padded, torch.round(y + 3.0), valid) - 1.0


def test_relaxation_before_the_search_pays_and_never_costs():
    """With ``relax`` the search starts from the relaxed latent rounded when that is better: a far
    latent gets closer in a few trials than the search alone gets it; a relaxation that goes astray
    (its rate rewards large latents) is dropped and the search runs as without it."""
    model, prior, padded, y, valid = _setup(40, 40)
    rate = lambda v: prior.bits(quantize_ste(v)).sum()  # noqa: E731
    relaxed_rate = lambda noisy, v, refresh: prior.bits(noisy).sum()  # noqa: E731
    far = y + 3.0
    plain = refine_latent(model.decoder, padded, far, rate, 0.05, 3, valid, search=True)
    relaxed = refine_latent(model.decoder, padded, far, rate, 0.05, 3, valid, search=True, relax=20,
                            relaxed_rate=relaxed_rate)  # fmt: skip
    assert torch.equal(relaxed, torch.round(relaxed))
    loss = lambda v: _loss(model.decoder, prior, padded, v, valid)  # noqa: E731
    assert loss(relaxed) < loss(plain) - 0.1, (loss(relaxed), loss(plain))
    astray = lambda noisy, v, refresh: -1e4 * noisy.abs().sum()  # noqa: E731
    kept = refine_latent(model.decoder, padded, far, rate, 0.05, 3, valid, search=True, relax=20, relaxed_rate=astray)
    assert torch.equal(kept, plain)
