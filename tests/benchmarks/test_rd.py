"""benchmarks/rd.py end to end on a tiny budget, so that it cannot silently rot."""

from __future__ import annotations

import json

import bench_support  # noqa: F401  (puts the repo root on sys.path)
import pytest

from benchmarks import rd


def test_rd_runs_and_writes_its_files(tmp_path):
    src = bench_support.write_photos(tmp_path / "photos", 3)
    out = tmp_path / "results"
    code = rd.main(["--regime", "dataset", "--limit", "3", "--qualities", "2,6", "--time-limit", "4",
                    "--codecs", "jpeg,webp", "--src", str(src), "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads((out / "rd-dataset.json").read_text())
    ours = [p for p in result["points"] if p["codec"] == "archiver"]
    assert [p["setting"] for p in ours] == [2, 6]
    assert all(p["bpp"] > 0 and p["psnr"] > 10 and p["steps"] > 0 for p in ours)
    assert set(result["bd_rate"]) == {"jpeg", "webp"}
    assert {"command", "commit", "machine", "date"} <= set(result)
    assert (out / "rd-dataset.md").read_text().startswith("# Rate–distortion, regime `dataset`")
    assert (out / "rd-dataset.png").stat().st_size > 1000


def test_unknown_regime_is_refused():
    with pytest.raises(SystemExit):
        rd.main(["--regime", "huge"])
