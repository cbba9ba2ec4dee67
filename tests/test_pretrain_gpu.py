"""scripts/pretrain_gpu.py: widening a base is function-preserving, and the learning-rate schedule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from pretrain_gpu import WARMUP, cosine_lr, widen_state  # noqa: E402

from archiver.codecs.pyramid.plan import PyramidSpec  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec  # noqa: E402


def test_widened_codec_starts_exactly_where_the_base_is():
    """A codec with wider synthesis layers, filled by widen_state from a narrower one, gives the
    same pixels and bits, yet its new units have weights (so training can move them)."""
    from conftest import smooth_image

    torch.manual_seed(3)
    spec = PyramidSpec(context="wavefront", context_hidden=12)
    base = PyramidCodec(spec).eval()
    wide = PyramidCodec(PyramidSpec(context="wavefront", context_hidden=12, hidden=(48, 24))).eval()
    state = widen_state(base.state_dict(), wide.state_dict())
    wide.load_state_dict(state)
    x = torch.from_numpy(smooth_image(np.random.default_rng(4), 64, 64)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        (a, bits_a), (b, bits_b) = base(x, 4, noise=False), wide(x, 4, noise=False)
    assert torch.allclose(a, b, atol=1e-5) and abs(bits_a.item() - bits_b.item()) < 1e-3
    first = state["synthesis.layers.0.weight"]
    assert first.shape[0] == 48 and first[32:].abs().sum() > 0  # new units see the latents
    assert state["synthesis.layers.1.weight"][:, 32:].abs().sum() == 0  # … and feed nothing yet


def test_widen_refuses_a_narrower_target():
    base = PyramidCodec(PyramidSpec(hidden=(32, 16))).state_dict()
    with pytest.raises(ValueError, match="does not fit"):
        widen_state(base, PyramidCodec(PyramidSpec(hidden=(16, 16))).state_dict())


def test_learning_rate_warms_up_then_decays_to_its_floor():
    assert cosine_lr(1.0, 0.0) == 0.0
    assert cosine_lr(1.0, WARMUP / 2) == pytest.approx(0.5 * cosine_lr(1.0, WARMUP), rel=1e-2)
    values = [cosine_lr(1.0, f) for f in np.linspace(WARMUP, 1.0, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(1.0, abs=0.01) and cosine_lr(1.0, 1.0) == pytest.approx(0.05)
