"""benchmarks/scale.py on a tiny budget (all three studies), so that it cannot silently rot."""

import json

import bench_support  # noqa: F401
from bench_support import write_photos

from benchmarks import scale


def test_scale_benchmark_runs(tmp_path, monkeypatch):
    src = write_photos(tmp_path / "photos", 3)
    out = tmp_path / "results"
    argv = ["--src", str(src), "--limit", "10", "--steps", "20", "--resume-steps", "80", "--every", "1s",
            "--time-limit", "3s", "--out", str(out)]  # fmt: skip
    assert scale.main(argv) == 0
    result = json.loads((out / "scale.json").read_text())
    assert [r["processes"] for r in result["processes"]["rows"]] == [1, 2]
    assert all(r["steps"] == 20 and r["steps_per_s"] > 0 for r in result["processes"]["rows"])
    resume = result["resume"]
    assert resume["same_decoder"] and resume["uninterrupted"]["psnr"] == resume["resumed"]["psnr"]
    assert abs(resume["uninterrupted"]["bytes"] - resume["resumed"]["bytes"]) < 64  # the JSON times differ
    rows = result["append"]["rows"]
    assert set(rows) == {"encoder", "search", "repack"}
    assert all(r["appended"]["images"] == 1 and r["rest"]["images"] == 9 for r in rows.values())
    assert rows["encoder"]["steps"] == 30 and rows["search"]["steps"] == 300
    md = (out / "scale.md").read_text()
    assert "## Append vs repack" in md and "Time lost to the interruption" in md
    # a later run of one study keeps the others' results (the study itself stubbed: it ran above)
    rows = [{**r, "steps_per_s": r["steps_per_s"] + 1.0} for r in result["processes"]["rows"]]
    monkeypatch.setattr(scale, "study_processes", lambda *a, **k: {**result["processes"], "rows": rows})
    assert scale.main([*argv[:-2], "--studies", "processes", "--out", str(out)]) == 0
    again = json.loads((out / "scale.json").read_text())
    assert again["append"] == result["append"] and again["resume"] == result["resume"]
    assert again["processes"]["rows"] == rows and again["processes"]["date"] >= result["processes"]["date"]
