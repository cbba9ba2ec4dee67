"""benchmarks/fuzz.py on a five-second budget per golden archive (the first format's and the newest
codec version's: per-image tails), so that it cannot silently rot."""

import json
from pathlib import Path

import bench_support  # noqa: F401
import pytest

from benchmarks import fuzz

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize("golden", ["v1-mixed.nca", "v3-pyramid-c6-tails-wavefront-delta-graph-mixed.nca"])
def test_fuzz_runs_and_finds_nothing_wrong(tmp_path, golden):
    archive = GOLDEN / golden
    assert fuzz.main(["--seconds", "5", "--archive", str(archive), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fuzz.json").read_text())
    assert result["inputs_tried"] > 3 and result["damage_detected"] == result["inputs_tried"]
