"""benchmarks/base_starts.py: the whole-model row re-counts the delta archive; BD-rates per start."""

import json

import bench_support  # noqa: F401

from benchmarks.base_starts import markdown, regime_table


def _point(codec, setting, bpp, psnr, **extra):
    return {"codec": codec, "setting": setting, "bpp": bpp, "psnr": psnr, "ms_ssim": None, **extra}


def _ours(q, bytes_, psnr, stored, whole, warm):
    extra = {"bytes": bytes_, "pixels": 8000, "byte_breakdown": {"model": stored + 500}, "model_blob_bytes": stored,
             "model_blob_bytes_whole": whole, "pack_s": 500.0, "train_s": 480.0, "stop_reason": "time_limit",
             "warm_start": warm}  # fmt: skip
    return _point("archiver", q, 8.0 * bytes_ / 8000, psnr, **extra)


def test_whole_row_adds_the_blob_difference_and_bd_rates_compare_starts(tmp_path):
    webp = [_point("webp", s, 0.2 * (1 + s / 10), 24 + s / 5) for s in range(0, 100, 10)]
    avif = [_point("avif", s, 0.25 * (1 + s / 10), 24 + s / 5) for s in range(0, 100, 10)]
    results = {
        "s": [_ours(4, 600, 26.0, 900, 900, None), _ours(8, 1200, 30.0, 1000, 1000, None)],
        "b": [_ours(4, 500, 26.0, 300, 800, "b1"), {**_ours(8, 1000, 30.0, 350, 950, "b1"), "graph_from_base_bytes": 50}],
    }
    for stem, ours in results.items():
        (tmp_path / f"{stem}.json").write_text(json.dumps({"points": webp + avif + ours}))
    table = regime_table("tiny", {"scratch": ["s", "missing"], "base": ["b"]}, folder=tmp_path)
    starts = table["starts"]
    whole, delta = starts["base, whole model stored"]["points"], starts["base + delta (default)"]["points"]
    # whole: the blob difference, and the graph where the delta archive took it from its base
    assert [r["bytes"] for r in whole] == [1000, 1650] and [r["bytes"] for r in delta] == [500, 1000]
    assert [r["model_bytes"] for r in whole] == [1300, 1500] and delta[0]["model_bytes"] == 800
    # the delta curve needs 1/6 fewer bytes than scratch at every PSNR: BD-rate about −16.7 %
    assert abs(starts["base + delta (default)"]["bd_rate_psnr"]["scratch"] + 100 / 6) < 0.5
    assert starts["from scratch"]["bd_rate_psnr"]["scratch"] is None
    assert starts["from scratch"]["bd_rate_psnr"]["webp"] is not None and table["sources"] == ["s", "b"]
    text = markdown([table])
    assert "| tiny | base + delta (default) | 4 | 0.500 | 26.00 | 800 (160.00 %) |" in text
