"""benchmarks/per_image_params.py (the probe of per-image parameters) on one tiny photo, so that it
cannot silently rot; and what the probe counts for its parameters."""

import json

import bench_support  # noqa: F401  (puts the repository on the path)
import torch
from bench_support import write_photos

from benchmarks import per_image_params as probe


def test_exp_golomb_bits_are_the_signed_code_lengths():
    # signed exp-Golomb: 0 → "1", ±1 → 3 bits, ±2, ±3 → 5 bits, ±4 … ±7 → 7 bits
    q = torch.tensor([0.0, 1, -1, 2, -2, 3, -3, 4, -7])
    assert [int(probe.exp_golomb_bits(v[None])) for v in q] == [1, 3, 3, 5, 5, 5, 5, 7, 7]


def test_probe_runs_and_counts_each_variants_parameters(tmp_path):
    src = write_photos(tmp_path / "photos", 1, 96, 64)
    out = tmp_path / "results"
    argv = ["--src", str(src), "--images", "1", "--steps", "6", "--variants", "latents,last+gains",
            "--split", "all", "--out", str(out)]  # fmt: skip
    assert probe.main(argv) == 0
    rows = {r["variant"]: r for r in json.loads((out / "per-image-params.json").read_text())["rows"]}
    assert rows["latents"]["param_bpp"] == 0
    # six level gains of 8 bits, and at least one bit for each of the last layer's 51 numbers
    pixels = 96 * 64
    assert rows["last+gains"]["param_bpp"] >= (6 * 8 + 51) / pixels
    assert all(r["bpp"] > r["param_bpp"] and 10 < r["psnr"] < 60 for r in rows.values())
    assert "| 4 | last+gains |" in (out / "per-image-params.md").read_text()
