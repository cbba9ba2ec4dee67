from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from archiver.bench import classic
from archiver.bench.classic import CODECS, sweep

KEYS = {"codec", "setting", "n_images", "bytes", "pixels", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s"}
LOW_HIGH = {"jpeg": [5, 90], "webp": [5, 90], "avif": [5, 90], "jxl": [5, 90]}


@pytest.fixture
def two_images(tmp_path, synthetic):
    rng = np.random.default_rng(7)
    paths = []
    for i, (w, h) in enumerate([(48, 40), (40, 56)]):
        p = tmp_path / f"img_{i}.png"
        Image.fromarray(synthetic(rng, w, h)).save(p)
        paths.append(p)
    return paths


def test_sweep_all_codecs(two_images):
    res = sweep(two_images, settings=LOW_HIGH, with_msssim=True)
    assert res["errors"] == []
    done = {p["codec"] for p in res["points"]} | set(res["skipped"])
    assert done == set(CODECS)
    for name in CODECS:
        pts = [p for p in res["points"] if p["codec"] == name]
        if name in res["skipped"]:
            continue
        assert [p["setting"] for p in pts] == LOW_HIGH[name]
        lo, hi = pts
        for p in pts:
            assert set(p) == KEYS
            assert p["pixels"] == 48 * 40 + 40 * 56 and p["n_images"] == 2
            assert p["bpp"] == pytest.approx(8 * p["bytes"] / p["pixels"])
            assert 10 < p["psnr"] < 80 and 0 < p["ms_ssim"] <= 1
        assert hi["bpp"] > lo["bpp"], name
        assert hi["psnr"] > lo["psnr"], name


def test_max_images_and_no_msssim(two_images):
    res = sweep(two_images, codecs=["JPEG"], settings={"jpeg": [50]}, with_msssim=False, max_images=1)
    (p,) = res["points"]
    assert p["n_images"] == 1 and p["pixels"] == 48 * 40 and p["ms_ssim"] is None


def test_missing_codec_is_skipped_and_bad_setting_recorded(two_images, monkeypatch):
    fake = dataclasses.replace(CODECS["avif"], unavailable=lambda: "plugin not installed")
    monkeypatch.setitem(classic.CODECS, "avif", fake)
    res = sweep(two_images, codecs=["avif", "jpeg"], settings={"jpeg": [50, "bad"]}, with_msssim=False)
    assert res["skipped"] == {"avif": "plugin not installed"}
    assert [p["setting"] for p in res["points"]] == [50]
    assert [(e["codec"], e["setting"]) for e in res["errors"]] == [("jpeg", "bad")]
    with pytest.raises(ValueError, match="unknown codec"):
        sweep(two_images, codecs=["bpg"])


def test_lowest_defaults_reach_codec_floor():
    assert min(CODECS["jpeg"].settings) == 1
    assert min(CODECS["webp"].settings) == 0 and min(CODECS["avif"].settings) == 0
    assert min(CODECS["jxl"].settings) == 0 and max(CODECS["jxl"].settings) < 100
    assert all(math.isfinite(s) for c in CODECS.values() for s in c.settings)
