"""``archiver.bench.nearest``: JPEG's bytes at an archived image's PSNR (the demo's last line)."""

from __future__ import annotations

import numpy as np
import pytest

from archiver.bench.nearest import _jpeg, jpeg_at_psnr
from conftest import smooth_image


def test_jpeg_at_psnr_brackets_the_target():
    rgb = smooth_image(np.random.default_rng(1), 96, 64)
    bpp50, psnr50 = _jpeg(rgb, 50)
    match = jpeg_at_psnr(rgb, psnr50)
    assert match.quality <= 50 and match.quality_psnr >= psnr50
    assert match.bpp == pytest.approx(bpp50, rel=0.15)
    below = _jpeg(rgb, match.quality - 1)
    assert below[1] < psnr50 and below[0] <= match.bpp <= match.quality_bpp


def test_jpeg_out_of_reach():
    rgb = smooth_image(np.random.default_rng(2), 64, 64)
    assert jpeg_at_psnr(rgb, 99.0).bpp is None
    low = jpeg_at_psnr(rgb, 1.0)
    assert low.quality == 1 and low.bpp == low.quality_bpp
