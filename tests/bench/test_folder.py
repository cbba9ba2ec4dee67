"""``archiver bench SRC``: a user's own folder against the classic codecs, on a tiny budget."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from archiver.bench.folder import bench_folder, collect_images
from archiver.cli import app
from archiver.errors import InputError
from conftest import make_icc, smooth_image

runner = CliRunner()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "mine"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 64, 48)).save(src / "a.png", icc_profile=make_icc())
    Image.fromarray(smooth_image(rng, 48, 64)).save(src / "sub" / "b.jpg", quality=95)
    (src / "notes.txt").write_text("not an image")
    return src


def test_collect_images_strips_metadata_and_skips_other_files(folder, tmp_path):
    paths = collect_images(folder, tmp_path / "scratch")
    assert [p.name for p in paths] == ["000000.png", "000001.png"]
    with Image.open(paths[0]) as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info  # neither side pays for metadata


def test_bench_folder_writes_the_report(folder, tmp_path):
    out = tmp_path / "report"
    result = bench_folder(folder, out, qualities=(6,), time_limit=3, codecs=["jpeg"])
    codecs = {p["codec"] for p in result["points"]}
    assert codecs == {"jpeg", "archiver"}
    ours = next(p for p in result["points"] if p["codec"] == "archiver")
    assert ours["n_images"] == 2 and ours["pixels"] == 2 * 64 * 48 and ours["psnr"] > 10
    assert "jpeg" in result["bd_rate"]
    assert json.loads((out / "bench.json").read_text())["n_images"] == 2
    assert (out / "bench.md").read_text().startswith("# Rate–distortion, folder `mine`")
    assert (out / "bench.png").stat().st_size > 1000
    with Image.open(out / "look.png") as im:  # two images: two rows of four panes
        assert im.size == (4 * (2 * 192 + 6) + 6, 2 * (34 + 2 * 192 + 6) + 6)
    shown = result["look"]
    assert shown["point"] == "archiver q6"
    assert [row[0]["note"] for row in shown["rows"]] == ["a.png, 64x48", "sub/b.jpg, 48x64"]
    # each image's share of the archive: the record coded alone plus a pixel share of the rest
    assert sum(row[1]["bytes"] for row in shown["rows"]) == pytest.approx(ours["bytes"], rel=0.05)


@pytest.mark.parametrize("args,match", [
    (["--qualities", "0"], "--qualities must be levels from 1 to 8, got 0"),
    (["--qualities", "x"], "--qualities must be comma-separated integers, got 'x'"),
    (["--codecs", "jpeg,bpg"], "--codecs: unknown codec 'bpg' (known: jpeg, webp, avif, jxl)"),
    (["--target-psnr", "x"], "--target-psnr must be comma-separated numbers of dB, got 'x'"),
    (["--target-psnr", "30", "--codec", "autoencoder"],
     "--target-psnr needs a codec with per-image rates (--codec pyramid), not autoencoder"),
    (["--target-psnr", "-3", "--codec", "pyramid"], "--target-psnr must be a PSNR in dB above 0 and at most 60, got -3"),
])  # fmt: skip
def test_cli_bench_errors(folder, tmp_path, args, match):
    result = runner.invoke(app, ["bench", str(folder), "-o", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and result.stderr == f"error: {match}\n"
    assert not (tmp_path / "r").exists()


def test_bench_points_by_target_psnr(folder, tmp_path):
    result = bench_folder(folder, tmp_path / "r", time_limit=3, codecs=["jpeg"], codec="pyramid", target_psnrs=(30.0,))
    ours = next(p for p in result["points"] if p["codec"] == "archiver")
    assert ours["setting"] == "psnr>=30" and ours["codec_name"] == "pyramid"
    assert "--target-psnr 30" in result["command"]
    assert result["look"]["point"] == "archiver psnr>=30" and (tmp_path / "r" / "look.png").is_file()


def test_folder_without_images(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(InputError, match=r"docs: no images that pack would code"):
        bench_folder(tmp_path / "docs", tmp_path / "r", qualities=(4,), time_limit=1, codecs=["jpeg"])
