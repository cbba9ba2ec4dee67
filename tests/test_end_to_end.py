"""pack → list/info/verify → extract on a mixed tree, through the CLI (in process, typer's runner)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import build_mixed_tree, run_cli as run

PSNR_FLOOR_DB = 20.0  # the synthetic images reach ~25-30 dB in 300 steps; a broken codec gives < 14


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    src = base / "src"
    kinds = build_mixed_tree(src)
    archive = base / "mixed.nca"
    # A step cap, not a time limit, so that a loaded machine gives the same archive, only later.
    result = run("pack", src, "-o", archive, "--max-steps", "300", "--time-limit", "10m", "--quality", "6", "--refine", "10", "--quiet")
    return src, archive, kinds, result


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / mse) if mse else 99.0


def test_pack_summary(packed):
    _, _, _, result = packed
    assert "5 images coded" in result.output
    assert "2 files stored as is" in result.output
    assert "sixteen.png: mode I;16" in result.output


def test_round_trip(packed, tmp_path):
    src, archive, kinds, _ = packed
    out = tmp_path / "out"
    run("extract", archive, "-o", out, "--quiet")
    for name, kind in kinds.items():
        a, b = src / name, out / name
        assert b.stat().st_mtime_ns == a.stat().st_mtime_ns, name
        if kind == "raw":
            assert b.read_bytes() == a.read_bytes(), name
            continue
        ia, ib = Image.open(a), Image.open(b)
        assert (ib.size, ib.mode, ib.format) == (ia.size, ia.mode, ia.format), name
        ref = "L" if kind == "L" else "RGB"
        assert _psnr(np.asarray(ia.convert(ref)), np.asarray(ib.convert(ref))) > PSNR_FLOOR_DB, name
        if kind == "RGBA":
            np.testing.assert_array_equal(np.asarray(ia.getchannel("A")), np.asarray(ib.getchannel("A")))
    assert (out / "empty_dir").is_dir() and not any((out / "empty_dir").iterdir())
    jpeg = Image.open(out / "sub/deeper/photo.jpg")
    assert jpeg.info["icc_profile"] == Image.open(src / "sub/deeper/photo.jpg").info["icc_profile"]
    assert jpeg.getexif()[0x010F] == "ArchiverTestCam"


def test_extract_one_entry_and_glob(packed, tmp_path):
    _, archive, _, _ = packed
    run("extract", archive, "-o", tmp_path / "one", "sub/gray.png", "--quiet")
    assert sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file()) == ["gray.png"]
    run("extract", archive, "-o", tmp_path / "glob", "*.txt", "--format", "png", "--quiet")
    assert [p.name for p in (tmp_path / "glob").rglob("*") if p.is_file()] == ["notes.txt"]
    run("extract", archive, "-o", tmp_path / "png", "sub/deeper/photo.jpg", "--format", "png", "--quiet")
    assert Image.open(tmp_path / "png/sub/deeper/photo.png").format == "PNG"


def test_extract_refuses_overwrite(packed, tmp_path):
    _, archive, _, _ = packed
    out = tmp_path / "o"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("extract", archive, "-o", out, "--quiet", code=2)
    assert f"error: {out / 'notes.txt'} already exists (use --force to overwrite)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing else written
    run("extract", archive, "-o", out, "--force", "--quiet")
    assert (out / "notes.txt").read_bytes().startswith(b"not an image")


def test_missing_entry(packed, tmp_path):
    _, archive, _, _ = packed
    result = run("extract", archive, "-o", tmp_path / "x", "nope.png", code=2)
    assert "error: no entry matches 'nope.png'" in result.stderr


def test_list(packed):
    _, archive, _, _ = packed
    out = run("list", archive).output
    for name in ("odd_rgb.png", "61x47", "RGBA", "empty_dir", "notes.txt"):
        assert name in out


def test_info_json(packed):
    src, archive, _, _ = packed
    data = json.loads(run("info", archive, "--json").output)
    for key in ("format_version", "images", "files", "pixels", "archive_bytes", "model_bytes", "latent_bytes",
                "other_bytes", "input_bytes", "bpp", "mean_psnr", "train_seconds", "steps", "stop_reason", "config"):
        assert key in data, key  # fmt: skip
    assert data["archive_bytes"] == archive.stat().st_size
    assert data["model_bytes"] + data["latent_bytes"] + data["other_bytes"] == data["archive_bytes"]
    assert data["input_bytes"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert data["pixels"] == 61 * 47 + 48 * 40 + 40 * 33 + 50 * 36 + 64 * 48
    assert data["bpp"] == pytest.approx(data["archive_bytes"] * 8 / data["pixels"])
    assert data["mean_psnr"] > PSNR_FLOOR_DB
    assert data["stop_reason"] in ("converged", "time_limit", "max_steps")
    assert data["config"]["quality"] == 6


def test_verify_ok_and_decode(packed):
    _, archive, _, _ = packed
    assert "OK, 10 entries checked, 5 images decoded identically" in run("verify", archive, "--decode").output


def test_verify_fails_after_one_flipped_byte(packed, tmp_path):
    _, archive, _, _ = packed
    damaged = tmp_path / "damaged.nca"
    raw = bytearray(archive.read_bytes())
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(archive) as r:
        entry = next(e for e in r.entries if e.name == "notes.txt")
        data_offset = r.data_offset()
    raw[data_offset + entry.offset + 3] ^= 0x40
    damaged.write_bytes(bytes(raw))
    result = run("verify", damaged, code=1)
    assert "FAIL file checksum mismatch: some byte of the archive has changed" in result.stderr
    # The damaged entry itself is named by a salvaging extract.
    out = run("extract", damaged, "-o", tmp_path / "o", "--keep-going", code=1)
    assert "error: notes.txt: not extracted:" in out.stderr and "checksum mismatch in entry 'notes.txt'" in out.stderr


def test_pack_refuses_existing_output(packed, tmp_path):
    src, archive, _, _ = packed
    result = run("pack", src, "-o", archive, code=2)
    assert result.stderr.strip() == f"error: {archive} already exists (use --force to overwrite)"
