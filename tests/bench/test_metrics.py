from __future__ import annotations


import math

import numpy as np
import pytest

from archiver.bench.metrics import bd_rate, ms_ssim, msssim_scales, psnr, rate_at_quality


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-9)  # MSE 1 -> 48.13 dB
    assert psnr(a, a + 10) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    with pytest.raises(ValueError):
        psnr(a, np.zeros((8, 7, 3), np.uint8))


@pytest.mark.parametrize("side,scales", [(200, 5), (161, 5), (160, 4), (128, 4), (32, 2), (11, 1), (10, 0)])
def test_msssim_scales(side, scales):
    assert msssim_scales(side, side + 7) == scales


@pytest.mark.parametrize("side", [200, 128, 32])
def test_ms_ssim_identity_and_noise(side):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    noisy = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 < ms_ssim(a, noisy) < 0.999
    assert math.isnan(ms_ssim(a[:8, :8], noisy[:8, :8]))


RATES = [0.1, 0.2, 0.4, 0.8, 1.6]  # bits per pixel
PSNRS = [28.0, 31.0, 34.0, 37.0, 40.0]  # dB


def test_bd_rate():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    half = [r / 2 for r in RATES]
    assert bd_rate(half, PSNRS, RATES, PSNRS) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(RATES, PSNRS, half, PSNRS) == pytest.approx(100.0, abs=1e-6)
    # partial overlap, unsorted input, a dominated point: still exactly -50 %
    shuffled = list(zip(half, [p + 0.0 for p in PSNRS])) + [(0.9, 30.0)]
    r, d = zip(*reversed(shuffled))
    assert bd_rate(r, d, RATES[1:], PSNRS[1:]) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]) is None  # no overlap
    assert bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS) is None


def test_rate_at_quality():
    assert rate_at_quality(RATES, PSNRS, 34.0) == pytest.approx(0.4)
    mid = rate_at_quality(RATES, PSNRS, 35.5)
    assert 0.4 < mid < 0.8 and mid == pytest.approx(math.sqrt(0.4 * 0.8), rel=1e-6)
    assert rate_at_quality(RATES, PSNRS, 27.0) is None
    assert rate_at_quality(RATES, PSNRS, 41.0) is None
    assert rate_at_quality(RATES + [float("inf")], PSNRS + [math.inf], 40.0) == pytest.approx(1.6)


def test_mean_psnr_caps_lossless_images():
    from archiver.bench.metrics import PSNR_CAP_DB, mean_psnr

    assert mean_psnr([30.0, math.inf]) == pytest.approx((30.0 + PSNR_CAP_DB) / 2)
    assert mean_psnr([]) is None
