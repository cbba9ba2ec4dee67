"""The study of joint optimization of a collection's latents with the pyramid's synthesis and context
network (benchmarks/joint_latents.py): crops pair pixels with their own latent cells, and the
optimization lowers the exact loss while leaving the encoder alone."""

from __future__ import annotations

import math

import bench_support  # noqa: F401  (puts the repository on the path)
import numpy as np
import torch

from archiver.codecs.pyramid.plan import PyramidSpec
from archiver.codecs.pyramid.levels import LAMBDAS as PYRAMID_LAMBDAS
from archiver.codecs.pyramid.model import PyramidCodec, laplace_bits
from archiver.codecs.pyramid.train import unpack_torch
from benchmarks.joint_latents import JOINT_CROP, JointLatents, joint_optimize

SPEC = PyramidSpec(context="wavefront", context_hidden=12)


def _images(seed: int = 0, sides=((128, 128), (96, 160), (70, 100))) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sides:
        base = rng.integers(0, 256, (-(-h // 8), -(-w // 8), 3)).astype(np.float32)
        out.append(np.kron(base, np.ones((8, 8, 1))).astype(np.uint8)[:h, :w])
    return out


def _codec(seed: int = 0) -> PyramidCodec:
    torch.manual_seed(seed)
    codec = PyramidCodec(SPEC)
    with torch.no_grad():  # steps of about 1/8: an untrained encoder's latents are not all zeros
        codec.log_steps.fill_(math.log(0.125))
    return codec


def _exact_loss(codec: PyramidCodec, joint: JointLatents, quality: int) -> float:
    """λ·255²·MSE + bpp of every image, latents rounded, over the images' own pixels."""
    steps, se, bits, pixels = codec.steps(quality).detach(), 0.0, 0.0, 0
    with torch.no_grad():
        for p, (h, w), z in zip(joint.pixels, joint.valid, joint.latents):
            grids = unpack_torch(SPEC, torch.round(z))
            x_hat = codec.synthesis([g * steps[i] for i, g in enumerate(grids)])[0, :, :h, :w]
            se += float(((x_hat - p[:, :h, :w].float() / 255.0) ** 2).sum())
            bits += float(sum(laplace_bits(g, mu, ls).sum() for g, (mu, ls) in zip(grids, codec.context(grids))))
            pixels += h * w
    return PYRAMID_LAMBDAS[quality] * 255.0**2 * se / (3 * pixels) + bits / pixels


def test_crops_pair_pixels_with_their_latent_cells_and_mask_the_padding():
    codec = _codec()
    joint = JointLatents(codec, _images(), 8, seed=0)
    s = SPEC.stride
    assert joint.crop == min(JOINT_CROP, 96) and joint.crop % s == 0
    assert [tuple(p.shape[-2:]) for p in joint.pixels] == [(128, 128), (96, 160), (96, 128)]
    # tag every latent cell with its image and position, so a crop's latent names where it came from
    with torch.no_grad():
        for k, z in enumerate(joint.latents):
            h, w = z.shape[-2:]
            z.copy_((k * 10000 + torch.arange(h).view(-1, 1) * 100 + torch.arange(w).view(1, -1)).float().expand_as(z))
    for _ in range(20):
        x, z, mask = joint.batch(4)
        assert x.shape == (4, 3, joint.crop, joint.crop) and z.shape == (4, SPEC.packed_channels, joint.crop // s, joint.crop // s)
        for b in range(4):
            tag = int(z[b, 0, 0, 0])
            k, i, j = tag // 10000, tag % 10000 // 100, tag % 100
            y0, x0 = i * s, j * s
            want = joint.pixels[k][:, y0 : y0 + joint.crop, x0 : x0 + joint.crop].float() / 255.0
            torch.testing.assert_close(x[b], want)
            h, w = joint.valid[k]
            assert float(mask[b].sum()) == max(0, min(h - y0, joint.crop)) * max(0, min(w - x0, joint.crop))


def test_joint_optimization_lowers_the_exact_loss_and_leaves_the_encoder():
    codec = _codec()
    joint = JointLatents(codec, _images(), 8, seed=0)
    before_latents = [z.detach().clone() for z in joint.latents]
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    loss_before = _exact_loss(codec, joint, 8)
    summary = joint_optimize(codec, joint, 8, PYRAMID_LAMBDAS[8], seconds=120, max_steps=25)
    assert summary["steps"] == 25 and math.isfinite(summary["last"]["loss"])
    assert _exact_loss(codec, joint, 8) < 0.9 * loss_before
    after = codec.state_dict()
    for name, value in before.items():
        assert torch.equal(value, after[name]) == (name.startswith("encoder.") or name == "log_steps"), name
    assert any(not torch.equal(a, z) for a, z in zip(before_latents, joint.latents))
    assert all(p.requires_grad for p in codec.parameters())
