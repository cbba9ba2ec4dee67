"""benchmarks/fuzz.py on a five-second budget, so that it cannot silently rot."""

import json

import bench_support  # noqa: F401

from benchmarks import fuzz


def test_fuzz_runs_and_finds_nothing_wrong(tmp_path):
    assert fuzz.main(["--seconds", "5", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fuzz.json").read_text())
    assert result["inputs_tried"] > 3 and result["damage_detected"] == result["inputs_tried"]
