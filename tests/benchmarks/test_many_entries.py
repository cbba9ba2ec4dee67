"""benchmarks/many_entries.py on a tiny budget, so that it cannot silently rot."""

import json

import bench_support  # noqa: F401

from benchmarks import many_entries


def test_many_entries_benchmark_runs(tmp_path):
    out = tmp_path / "results"
    assert many_entries.main(["--count", "30", "--side", "32", "--max-steps", "3", "--out", str(out)]) == 0
    row = json.loads((out / "many-entries.json").read_text())["row"]
    assert row["images"] == 30 and 50 << 20 < row["pack_peak_rss"] < 4 << 30 and row["list_peak_rss"] > 20 << 20
    assert row["archive_bytes"] == row["model_bytes"] + row["latent_bytes"] + row["other_bytes"]
    assert set(row["other_breakdown"]) >= {"names", "metadata", "checksums", "index", "container"}
    assert "| 30 of 32x24 |" in (out / "many-entries.md").read_text()
