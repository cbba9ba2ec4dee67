"""benchmarks/speed.py on a tiny budget, so that it cannot silently rot."""

from __future__ import annotations

import json

import bench_support

from benchmarks import speed


def test_speed_runs_and_writes_its_files(tmp_path):
    src = bench_support.write_photos(tmp_path / "photos", 2)
    out = tmp_path / "results"
    assert speed.main(["--regime", "dataset", "--limit", "2", "--time-limit", "3", "--runs", "1",
                       "--src", str(src), "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "speed-dataset.json").read_text())
    for key in ("extract_all_mpx_s", "extract_peak_rss_mib", "one_image_process_s", "network_onnx_mpx_s",
                "network_torch_mpx_s", "pillow_jpeg_mpx_s", "pillow_avif_mpx_s", "decoder_macs_per_pixel"):
        assert result[key] > 0, key  # fmt: skip
    assert result["onnx_vs_torch_max_abs_diff"] <= 1
