"""OptimSynthesis computes what the packed synthesis computes, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from archiver.codecs.pyramid.fastsynth import OptimSynthesis, upsample_matrix


@pytest.mark.parametrize("h,w,factor", [(4, 4, 2), (3, 5, 4), (2, 6, 32), (8, 1, 8)])
def test_upsample_matrix_is_torchs_bilinear(h, w, factor):
    torch.manual_seed(h * w)
    g = torch.randn(2, 1, h, w)
    want = F.interpolate(g, size=(h * factor, w * factor), mode="bilinear", align_corners=False)
    got = upsample_matrix(h, factor) @ g @ upsample_matrix(w, factor).t()
    assert torch.allclose(got, want, atol=1e-5)


def _packed_synthesis(seed: int):
    from archiver.codecs.pyramid.model import PyramidCodec
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
    from archiver.codecs.pyramid.train import int8_synthesis, synthesis_arrays

    torch.manual_seed(seed)
    codec = PyramidCodec(PYRAMID_PRESETS["default"])
    for p in codec.synthesis.parameters():  # larger than the init: negative pre-activations matter
        p.data.normal_(0, 0.5)
    return codec, int8_synthesis(codec, synthesis_arrays(codec, 4))


@pytest.mark.parametrize("n,side", [(1, 64), (3, 32), (2, 96)])
def test_forward_and_input_gradient_match_the_packed_synthesis(n, side):
    codec, packed = _packed_synthesis(n * side)
    for p in packed.parameters():
        p.requires_grad_(False)
    stride = codec.spec.stride
    z = (torch.randn(n, codec.spec.packed_channels, side // stride, side // stride) * 3).round()
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    want, got = packed(a), OptimSynthesis(packed)(b)
    assert got.shape == want.shape == (n, 3, side, side)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    weight = torch.randn_like(want)
    (want * weight).sum().backward()
    (got * weight).sum().backward()
    assert torch.allclose(b.grad, a.grad, atol=1e-3 * a.grad.abs().max().item())
