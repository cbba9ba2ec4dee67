"""The pyramid's training recipes: variable rate with a log of every level, exact resume, and the
model's own bits in the loss when an archive stores its difference from a base."""

from __future__ import annotations

import numpy as np
import torch

from archiver.codecs.pyramid.plan import PyramidSpec
from archiver.config import config_for_quality
from archiver.model.checkpoint import Checkpointer
from archiver.codecs.pyramid.model import PyramidCodec
from archiver.codecs.pyramid.train import DeltaRate, PyramidRecipe, train_pyramid


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(3):
        base = rng.integers(0, 256, (12, 12, 3)).astype(np.float32)
        out.append(np.kron(base, np.ones((8, 8, 1))).astype(np.uint8))  # 96 × 96, blocky
    return out


def _cfg(steps: int):
    return config_for_quality(4, codec="pyramid", max_steps=steps, check_every=5, refine_steps=0,
                              warm_start=False, device="cpu")  # fmt: skip


RECIPE = PyramidRecipe(qualities=(1, 4, 8), coarse_steps=4, flip=True)


def test_variable_rate_run_logs_every_level():
    result = train_pyramid(_images(), _cfg(10), PyramidSpec(), recipe=RECIPE)
    logged = [h for h in result.history if "levels" in h]
    assert logged and [lv["quality"] for lv in logged[-1]["levels"]] == [1, 4, 8]
    bpp = [lv["bpp"] for lv in logged[-1]["levels"]]
    assert all(b > 0 for b in bpp)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole = train_pyramid(_images(), _cfg(12), PyramidSpec(), recipe=RECIPE)
    saver = Checkpointer(tmp_path / "ckpt", "test", every=1e9)
    first = train_pyramid(_images(), _cfg(6), PyramidSpec(), recipe=RECIPE, checkpointer=saver)
    assert first.steps == 6
    resumed = train_pyramid(_images(), _cfg(12), PyramidSpec(), recipe=RECIPE,
                            checkpointer=Checkpointer(tmp_path / "ckpt", "test", every=1e9))  # fmt: skip
    assert resumed.steps == 12
    a, b = whole.codec.state_dict(), resumed.codec.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_delta_rate_is_zero_at_the_base_and_pulls_back_to_it():
    torch.manual_seed(0)
    codec = PyramidCodec(PyramidSpec())
    start = {k: v.clone() for k, v in codec.state_dict().items()}
    rate = DeltaRate(codec, start)
    assert rate(codec).item() == 0.0
    with torch.no_grad():
        for name, p in codec.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved = rate(codec)
    assert moved.item() > 0
    moved.backward()
    for name, p in codec.named_parameters():
        if name.startswith("encoder.") or name == "log_steps":
            assert p.grad is None, name  # not stored: free to move
    w = codec.synthesis.layers[0].weight
    # The gradient points away from the base: a step against it moves the weight back.
    assert torch.sum(w.grad * (w.detach() - start["synthesis.layers.0.weight"])) > 0


def test_a_plateau_of_the_held_back_psnr_drops_the_learning_rate():
    """With the learning rate at 0 nothing improves: the second check is a plateau (patience 1)."""
    cfg = config_for_quality(4, codec="pyramid", max_steps=15, check_every=5, refine_steps=0,
                             warm_start=False, device="cpu", lr=0.0, lr_drops=1)  # fmt: skip
    result = train_pyramid(_images(), cfg, PyramidSpec(), recipe=PyramidRecipe(coarse_steps=0, patience=1))
    assert [h["converged"] for h in result.history] == [False, True, True]
    assert result.stop_reason == "converged"  # one drop, then the next plateau stops training
