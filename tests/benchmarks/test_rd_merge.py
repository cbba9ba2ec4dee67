"""benchmarks/rd_merge.py: archiver points of two single-quality runs, one classic curve."""

import bench_support  # noqa: F401

from benchmarks.rd_merge import merge


def _point(codec, setting, bpp, psnr):
    return {"codec": codec, "setting": setting, "bpp": bpp, "psnr": psnr, "ms_ssim": psnr / 40}


def test_merge_takes_classic_once_and_every_quality():
    base = {"regime": "tiny", "seed": 0, "split": "heldout", "n_images": 3, "command": "a", "date": "d1"}
    a = {**base, "points": [_point("webp", q, 0.5 + q / 100, 24 + q / 10) for q in range(0, 100, 10)] + [_point("archiver", 2, 0.3, 24.2)]}
    b = {**base, "command": "b", "date": "d2", "points": a["points"][:-1] + [_point("archiver", 4, 0.35, 24.6)]}
    merged = merge([a, b])
    assert [p["setting"] for p in merged["points"] if p["codec"] == "archiver"] == [2, 4]
    assert sum(p["codec"] == "webp" for p in merged["points"]) == 10
    assert merged["bd_rate"]["webp"]["bd_rate_psnr"] is not None and merged["command"] == "a + b"
