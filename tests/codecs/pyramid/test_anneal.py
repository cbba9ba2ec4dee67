"""The pyramid's annealed latent optimization (codecs/pyramid/anneal.py): soft rounding and noise,
a batch that only improves on rounding, batching by size, pricing from the refinement budget, and
a pack whose images are annealed, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from archiver.codecs.pyramid import anneal
from archiver.codecs.pyramid.anneal import (
    AnnealSchedule, Annealer, anneal_latents, anneal_step, batches, kumaraswamy_noise, soft_round,
)  # fmt: skip
from archiver.model.refine import RefineBudget
from conftest import run_cli as run


def test_soft_round_goes_from_identity_to_rounding():
    y = torch.linspace(-3.4, 3.4, 69)
    off_half = (y - torch.floor(y) - 0.5).abs() > 0.05  # at ±½ soft rounding stays at ½ by symmetry
    assert torch.allclose(soft_round(y, 1e-3)[off_half], torch.round(y)[off_half], atol=1e-4)
    assert torch.allclose(soft_round(y, 50.0), y, atol=1e-3)
    assert torch.all(torch.diff(soft_round(y, 0.2)) > 0)  # monotone: gradients keep their sign
    # integers and half-integers are fixed points at any temperature
    k = torch.tensor([-2.0, -0.5, 0.0, 1.5, 3.0])
    assert torch.allclose(soft_round(k, 0.3), k, atol=1e-6)


def test_kumaraswamy_noise_is_uniform_at_one_and_narrower_above():
    torch.manual_seed(0)
    like = torch.empty(200_000)
    uniform, narrow = kumaraswamy_noise(like, 1.0), kumaraswamy_noise(like, 2.0)
    for u in (uniform, narrow):
        assert u.min() > -0.5 and u.max() < 0.5 and abs(u.mean()) < 0.01
    assert abs(uniform.var().item() - 1 / 12) < 2e-3
    assert narrow.var() < 0.8 * uniform.var()


@pytest.fixture(scope="module")
def codec():
    from archiver.codecs.pyramid.base import find_pyramid_base
    from archiver.codecs.pyramid.model import PyramidCodec
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS

    spec = PYRAMID_PRESETS["default"]
    codec = PyramidCodec(spec)
    base = find_pyramid_base(spec)
    if base is None:
        pytest.skip("no shipped pyramid base")
    codec.load_state_dict(base.state_dict())
    return codec.eval()


def _batch(codec, n: int = 3, side: int = 64):
    from archiver.codecs.pyramid.infer import encode_continuous

    rng = np.random.default_rng(1)
    y, x = np.mgrid[:side, :side]
    out = []
    for k in range(n):  # smooth gradients plus a little noise: photo-like, not white noise
        rgb = np.stack([(x * (2 + k) + y * 3) % 256, (y * 4 + 40 * k) % 256, (x + y) % 256], -1).astype(float)
        out.append(encode_continuous(codec, np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8), 4))
    return torch.cat([e[0][0] for e in out]), torch.cat([e[0][1] for e in out]), out[0][1]


def test_annealing_lowers_every_images_loss_and_gives_integers(codec):
    from archiver.codecs.pyramid.anneal import _LossOf
    from archiver.codecs.pyramid.levels import LAMBDAS
    from archiver.codecs.pyramid.train import int8_synthesis, synthesis_arrays

    synth = int8_synthesis(codec, synthesis_arrays(codec, 4))
    targets, z, valid = _batch(codec)
    torch.manual_seed(0)
    y = anneal_latents(codec, synth, targets, z, valid, LAMBDAS[4], 60)
    assert y.shape == z.shape and torch.equal(y, torch.round(y))
    loss = _LossOf(codec, synth, targets, valid, LAMBDAS[4])
    start, end = loss.hard(torch.round(z)), loss.hard(y)
    assert torch.all(end <= start)
    assert end.sum() < 0.98 * start.sum()  # 60 steps find something on each of these
    # no steps: the rounded start
    assert torch.equal(anneal_latents(codec, synth, targets, z, valid, LAMBDAS[4], 0), torch.round(z))


def test_packed_bits_match_the_level_by_level_rate_and_its_gradient():
    """One packed tensor with a hand-written backward gives the bits and gradient that autograd
    gives through laplace_bits level by level (including bins at the mode, far tails clamped)."""
    from archiver.codecs.pyramid.export import pack_torch, unpack_torch
    from archiver.codecs.pyramid.model import laplace_bits, laplace_inverse_scale
    from archiver.codecs.pyramid.plan import PyramidSpec

    spec = PyramidSpec(channels=(1, 1, 1, 1, 1, 1))
    g = torch.Generator().manual_seed(3)
    shape = (2, spec.packed_channels, 4, 5)
    y = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    log_scale = torch.randn(shape, generator=g, dtype=torch.float64) * 3  # some beyond the clamp
    y.data[0, 0, 0, :3] = mu[0, 0, 0, :3] + torch.tensor([0.0, 0.3, 60.0], dtype=torch.float64)  # mode, inside, clamped
    levels = zip(unpack_torch(spec, y), unpack_torch(spec, mu), unpack_torch(spec, log_scale))
    reference = sum(laplace_bits(a, m, ls).sum(dim=(1, 2, 3)) for a, m, ls in levels)
    (ref_grad,) = torch.autograd.grad(reference.sum() * 1.0 + reference[1] * 2.0, y)
    assert pack_torch(spec, unpack_torch(spec, mu)).equal(mu)
    bits = anneal._PackedBits.apply(y, mu, laplace_inverse_scale(log_scale))
    (grad,) = torch.autograd.grad(bits.sum() * 1.0 + bits[1] * 2.0, y)
    torch.testing.assert_close(bits, reference, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("noisy", [False, True])
def test_soft_noisy_matches_soft_round_and_its_gradient(noisy):
    g = torch.Generator().manual_seed(4)
    y = (torch.randn(3, 5, 6, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    u = torch.rand(3, 5, 6, generator=g, dtype=torch.float64) - 0.5 if noisy else None
    for t in (0.3, 0.1):
        reference = soft_round(soft_round(y, t) + u, t) if noisy else soft_round(y, t)
        out = anneal._SoftNoisy.apply(y, t, u)
        torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
        weights = torch.randn(y.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(torch.autograd.grad((out * weights).sum(), y)[0],
                                   torch.autograd.grad((reference * weights).sum(), y)[0], rtol=1e-9, atol=1e-12)


def test_anneal_step_follows_the_recipe_over_both_stages():
    schedule = AnnealSchedule(soft_share=0.8, t_start=0.3, t_end=0.1, noise_a_end=2.0)
    at = [anneal_step(schedule, step, 100) for step in range(100)]
    assert [a.soft for a in at] == [True] * 80 + [False] * 20
    assert (at[0].t, at[0].a, at[0].lr_scale) == (0.3, 1.0, 1.0)
    assert at[79].t == pytest.approx(0.1) and at[79].a == pytest.approx(2.0)
    assert [a.k for a in at[78:82]] == [78, 79, 0, 1]  # the index restarts with the second stage
    assert at[40].lr_scale == pytest.approx(0.5)  # a cosine over the first stage
    assert at[80].lr_scale == pytest.approx(0.1) and at[90].lr_scale == pytest.approx(0.05)  # a tenth, then its cosine
    assert all(a.t > b.t for a, b in zip(at[:79], at[1:80]))


def test_schedule_round_trips():
    s = AnnealSchedule(noise=False, lr=0.1)
    assert AnnealSchedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_batches_group_one_size_and_cap_the_pixels(monkeypatch):
    monkeypatch.setattr(anneal, "BATCH_PIXELS", 3 * 64 * 64)
    sizes = {0: (64, 64), 1: (32, 64), 2: (64, 64), 3: (64, 64), 4: (64, 64), 5: (32, 64)}
    assert batches(sizes) == [[0, 2, 3], [4], [1, 5]]
    assert batches({7: (4096, 4096)}) == [[7]]  # one image at least


def test_annealer_prices_from_the_budget_and_falls_back_to_the_search():
    budget = RefineBudget(30, 100.0, 1_000_000)
    annealer = Annealer(budget)
    assert annealer.max_steps == anneal.STEPS_PER_TRIAL * 30
    # 100 s for the whole million pixels, 10 % of them now: 10 s at the default cost is 232 steps
    assert annealer.steps_for(100_000, 4) == int(10.0 / (anneal.SECONDS_PER_PIXEL_STEP * 100_000))
    annealer.done(100_000, 4, 200, 20.0)  # twice the default cost, measured
    assert budget.pixels_left == 900_000 and budget.spent == 20.0
    assert annealer.steps_for(900_000, 36) == 0  # 80 s for 900 kpx at 1 µs: 88 steps, below MIN_STEPS
    assert Annealer(RefineBudget(3, 100.0, 1000)).steps_for(1000, 1) == 0  # --refine 3: 60 at most
    assert Annealer(RefineBudget(3, 100.0, 1000), effort=4).max_steps == anneal.STEPS_PER_TRIAL * 3 * 4
    assert annealer.summary() == {"images": 4, "mean_steps": 200.0, "seconds": 20.0}


def test_a_pack_anneals_its_images_and_extracts(tmp_path, monkeypatch):
    """In process, so that the annealing's thresholds can be lowered for tiny images."""
    from PIL import Image

    from archiver.config import config_for_quality
    from archiver.pack import pack

    monkeypatch.setattr(anneal, "MIN_STEPS", 4)
    monkeypatch.setattr(anneal, "STEPS_PER_TRIAL", 2)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        y, x = np.mgrid[:48, :48]
        rgb = np.stack([(x * 3 + 20 * k) % 256, (y * 5) % 256, (x * y) % 256], -1) + rng.normal(0, 4, (48, 48, 3))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(src / f"{k}.png")
    cfg = config_for_quality(4, max_steps=20, refine_steps=5)
    events = []
    pack(src, tmp_path / "a.nca", cfg, progress=events.append)
    steps = [e for e in events if e.stage == "anneal"]
    assert steps and all({"psnr", "bpp", "left_s"} <= set(e.detail) for e in steps)
    info = json.loads(run("info", tmp_path / "a.nca", "--json").output)
    annealed = info["refine"]["annealed"]
    assert annealed["images"] == 3 and annealed["mean_steps"] == 10
    run("verify", tmp_path / "a.nca", "--decode")
    run("extract", tmp_path / "a.nca", "-o", tmp_path / "out", "--quiet")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]


def test_anneal_device_runs_the_batch_on_the_asked_device_and_returns_cpu_integers(codec):
    """The pack's annealing goes through AnnealDevice (on CUDA when pack has one): on the CPU it
    uses the pack's own modules and gives what anneal_latents gives."""
    from archiver.codecs.pyramid.anneal import AnnealDevice

    from archiver.codecs.pyramid.train import int8_synthesis, synthesis_arrays

    c = codec
    synth = int8_synthesis(c, synthesis_arrays(c, 4))
    targets, z, valid = _batch(c, n=2, side=32)
    torch.manual_seed(11)
    want = anneal_latents(c, synth, targets, z, valid, 0.013, 12)
    device = AnnealDevice(c, synth, "cpu")
    torch.manual_seed(11)
    got = device.anneal(targets, z, valid, 0.013, 12)
    assert device.device == torch.device("cpu") and device.codec is c and device.synth is synth
    assert got.device.type == "cpu" and torch.equal(got, want) and torch.equal(got, got.round())
