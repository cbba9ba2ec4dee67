"""benchmarks/memory.py on a tiny budget, so that it cannot silently rot."""

import json

import bench_support  # noqa: F401

from benchmarks import memory


def test_memory_benchmark_runs(tmp_path):
    out = tmp_path / "results"
    assert memory.main(["--counts", "3", "--side", "64", "--photo-mpx", "0.05", "--max-steps", "5", "--refine", "3", "--out", str(out)]) == 0
    rows = json.loads((out / "memory.json").read_text())["rows"]
    assert [r["images"] for r in rows] == [3, 1]
    # a fresh Python with torch and onnxruntime loaded is well above 50 MiB; far below 4 GiB here
    assert all(50 << 20 < r["pack_peak_rss"] < 4 << 30 and r["extract_peak_rss"] > 20 << 20 for r in rows)
    assert "| 3 images of 64x48 |" in (out / "memory.md").read_text()
    assert rows[1]["append_to"] == "3 images of 64x48" and 50 << 20 < rows[1]["append_peak_rss"] < 4 << 30
