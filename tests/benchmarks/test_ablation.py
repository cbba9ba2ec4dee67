"""benchmarks/ablation.py on a tiny budget, so that it cannot silently rot."""

import json

import bench_support

from archiver.codecs.autoencoder.architecture import decoder_params
from archiver.config import MODEL_PRESETS
from benchmarks import ablation


def test_ablation_runs_every_variant(tmp_path):
    src = bench_support.write_photos(tmp_path / "photos", 2)
    out = tmp_path / "results"
    assert ablation.main(["--time-limit", "2", "--limit", "2", "--src", str(src), "--out", str(out)]) == 0
    result = json.loads((out / "ablation.json").read_text())
    names = [r["variant"] for r in result["rows"]]
    assert names == ["cae", "cae+res", "no-entropy-coding", "residual-off", "int8-off", "small", "base", "large",
                     "no-rate-term", "denoiser", "gan", "refine-off", "cae+res@q2", "denoiser@q2", "gan@q2"]  # fmt: skip
    rows = {r["variant"]: r for r in result["rows"]}
    # float32 weights: up to 3 more bytes per weight than int8 (the auto size for 2 small images is "tiny")
    extra = rows["int8-off"]["bytes"] - rows["cae+res"]["bytes"]
    assert extra > 2 * decoder_params(MODEL_PRESETS["tiny"])  # 3 bytes more a weight, less what zstd saves
    plain, raw = rows["cae+res"], rows["no-entropy-coding"]
    assert raw["bytes"] == plain["bytes"] - plain["latent_bytes"] + raw["latent_bytes"]
    assert all(r["psnr"] > 8 and r["cr"] > 0 for r in rows.values())
    assert "kept" in rows["denoiser"]["denoiser"] and "denoiser" not in rows["cae+res"]
    assert rows["gan"]["gan"]["disc_width"] == 16 and rows["gan@q2"]["gan"]["perceptual"] == "msssim"
    assert rows["cae+res@q2"]["setting"] == 2  # the second rate really is another --quality
    md = (out / "ablation.md").read_text()
    assert "| gan@q2 |" in md and "![originals and reconstructions](ablation-grid.png)" in md
    from PIL import Image

    with Image.open(out / "ablation-grid.png") as grid:  # 4 columns: original, plain, denoiser, GAN
        assert grid.width == 4 * 2 * 128
