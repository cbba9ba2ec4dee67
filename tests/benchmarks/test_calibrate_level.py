"""benchmarks/calibrate_level.py on two tiny photos: the λ it sets is the one the pack uses."""

import json

import bench_support  # noqa: F401  (puts the repository on the path)
from bench_support import write_photos

from benchmarks import calibrate_level


def test_a_larger_lambda_packs_more_bits_and_the_results_say_so(tmp_path):
    src = write_photos(tmp_path / "photos", 2, 96, 64)
    out = tmp_path / "results"
    argv = ["--src", str(src), "--split", "all", "--quality", "8", "--lambdas", "0.002,0.3",
            "--time-limit", "6s", "--out", str(out)]  # fmt: skip
    assert calibrate_level.main(argv) == 0
    rows = json.loads((out / "calibrate-album-all-q8.json").read_text())["rows"]
    assert [r["lambda"] for r in rows] == [0.002, 0.3]
    # (on photos this small the model's bytes dominate the bpp: only the direction is checked)
    assert rows[1]["bpp"] > rows[0]["bpp"] and rows[1]["psnr"] > rows[0]["psnr"]
    assert "| 0.3 |" in (out / "calibrate-album-all-q8.md").read_text()
