"""``pack --codec pyramid`` end to end: pack → info → verify --decode → extract, the codec named in the
archive, pixels as pack measured them, options it does not have refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from archiver.errors import CorruptArchiveError
from conftest import assert_flip_detected, build_mixed_tree, run_cli as run

@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    base = tmp_path_factory.mktemp("pyr")
    src = base / "src"
    kinds = build_mixed_tree(src)
    archive = base / "pyr.nca"
    run("pack", src, "-o", archive, "--codec", "pyramid", "--max-steps", "60", "--refine", "3", "--quality", "8", "--quiet")
    return src, archive, kinds


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / mse) if mse else 99.0


def test_info_names_the_codec(packed):
    _, archive, _ = packed
    info = json.loads(run("info", archive, "--json").output)
    assert info["codec"]["name"] == "pyramid"
    assert info["codec"]["spec"]["channels"]


def test_verify_decode_is_bit_exact(packed):
    _, archive, _ = packed
    run("verify", archive, "--decode")


def test_extract_gives_the_images_back(packed, tmp_path):
    src, archive, kinds = packed
    out = tmp_path / "out"
    run("extract", archive, "-o", out, "--quiet")
    coded = [n for n, k in kinds.items() if k != "raw"]
    assert coded
    for name, kind in kinds.items():
        if kind == "raw":
            assert (out / name).read_bytes() == (src / name).read_bytes()
            continue
        a = np.asarray(Image.open(src / name).convert("RGB"))
        b = np.asarray(Image.open(out / name).convert("RGB"))
        assert a.shape == b.shape, name
        assert _psnr(a, b) > 15.0, name  # 60 steps: far from converged, far from noise (< 10 dB)


def test_unknown_codec_is_refused(tmp_path):
    src = tmp_path / "src"
    build_mixed_tree(src)
    result = run("pack", src, "-o", tmp_path / "x.nca", "--codec", "jpeg2000", "--quiet", code=2)
    assert "--codec" in result.output


def test_append_to_a_pyramid_archive(packed, tmp_path):
    """New images are coded with the archive's model; tables are counted again, so every old image
    decodes to the same pixels, and verify --decode checks old and new against pack/append time."""
    import shutil

    from archiver.append import append
    from archiver.api import open as open_archive

    src, packed_archive, _ = packed
    archive = tmp_path / "a.nca"
    shutil.copy(packed_archive, archive)
    with open_archive(packed_archive) as a:
        before = {n: a.read(n) for n in a.image_names()}
    more = tmp_path / "more"
    more.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(np.kron(rng.integers(0, 256, (6, 5, 3)), np.ones((8, 8, 1))).astype(np.uint8)).save(more / "new.png")
    (more / "note.txt").write_bytes(b"x")
    report = append(archive, more, steps=5)
    assert report.images == 1 and report.files == 1 and report.method in ("search", "base-encoder")
    run("verify", archive, "--decode")
    with open_archive(archive) as a:
        assert a.read("note.txt") == b"x"
        assert a.read("new.png").shape == (48, 40, 3)
        for name, pixels in before.items():
            assert np.array_equal(a.read(name), pixels), name
    info = json.loads(run("info", archive, "--json").output)
    assert info["codec"] == json.loads(run("info", packed_archive, "--json").output)["codec"]


PYRAMID_GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "v3-pyramid-mixed.nca"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_pyramid_archive_is_detected(tmp_path, data):
    """A flipped byte anywhere in a pyramid archive ends in a report or a clear error, never a crash."""
    pos = data.draw(st.integers(0, PYRAMID_GOLDEN.stat().st_size - 1))
    assert_flip_detected(PYRAMID_GOLDEN, tmp_path, pos, data.draw(st.integers(1, 255)))


def test_damaged_pyramid_stream_behind_valid_checksums_is_a_clear_error():
    """A truncated stream that got past the container's checksums (a crafted archive) decodes to some
    values or raises CorruptArchiveError, never another exception or a hang."""
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(PYRAMID_GOLDEN) as reader:
        entry = next(e for e in reader.entries if e.kind.name == "IMAGE")
        coder = reader.codec.coder()
        h, w = reader.latent_shape(entry)
        latent, _ = reader.read_image(entry)
    data = coder.encode(latent)
    for cut in (4, len(data) // 2):
        try:
            coder.decode(data[:-cut] if cut < len(data) else b"", h, w)
        except CorruptArchiveError:
            continue
