"""append: new files into an existing archive with its stored decoder, atomically, nothing else changed."""

from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from archiver.append import append
from archiver.cli import app
from archiver.container.reader import ArchiveReader
from archiver.errors import InputError, NotAnArchiveError
from archiver.inspect import verify
from conftest import smooth_image, write_images

runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("append")
    src = write_images(root / "src", 4, 64, 48, seed=1)
    archive = root / "a.nca"
    result = runner.invoke(app, ["pack", str(src), "-o", str(archive), "--max-steps", "400", "--quality", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    return root, archive


def _more(folder, seed=7):
    rng = np.random.default_rng(seed)
    (folder / "new").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 64, 48)).save(folder / "new" / "x.png")
    Image.fromarray(smooth_image(rng, 40, 72)).save(folder / "y.png")
    (folder / "notes.txt").write_bytes(b"kept byte for byte\n")
    return folder


def test_append_adds_and_keeps_everything(base, tmp_path):
    root, packed = base
    archive = tmp_path / "a.nca"
    shutil.copy(packed, archive)
    with ArchiveReader(archive) as r:
        before = {e.path: (e.checksum, e.psnr, e.pixel_crc32) for e in r.entries}
        decoder_before = r.model_arrays()
    report = append(archive, _more(tmp_path / "more"), steps=150)
    assert (report.images, report.files, report.folders) == (2, 1, 1)
    assert math.isfinite(report.mean_psnr) and report.mean_psnr > 18
    assert report.latent_bytes > 0 and report.archive_bytes == archive.stat().st_size
    with ArchiveReader(archive) as r:
        entries = {e.path: e for e in r.entries}
        for name, old in before.items():  # the archive's own entries are unchanged
            assert (entries[name].checksum, entries[name].psnr, entries[name].pixel_crc32) == old
        for k, v in r.model_arrays().items():  # same decoder: no retraining
            np.testing.assert_array_equal(v, decoder_before[k])
        assert {b"new/x.png", b"y.png", b"notes.txt", b"new"} <= set(entries)
        assert r.summary["images"] == 6 and r.training["appends"][0]["images"] == 2
    assert verify(archive, decode=True).ok  # appended images decode to exactly the pixels measured
    out = tmp_path / "out"
    assert runner.invoke(app, ["extract", str(archive), "-o", str(out), "--quiet"]).exit_code == 0
    assert (out / "notes.txt").read_bytes() == b"kept byte for byte\n"
    with Image.open(out / "y.png") as im:
        assert im.size == (40, 72)


def test_appended_images_are_close_to_packed_ones(base, tmp_path):
    """The same images appended (latents found by search, no encoder) come close to pack's quality."""
    root, packed = base
    archive = tmp_path / "a.nca"
    shutil.copy(packed, archive)
    again = tmp_path / "again"
    shutil.copytree(root / "src", again / "copy")
    report = append(archive, again, steps=300)
    assert report.images == 4
    assert report.mean_psnr > report.archive_mean_psnr - 1.5, (report.mean_psnr, report.archive_mean_psnr)


def test_name_collision_is_refused_and_archive_untouched(base, tmp_path):
    root, packed = base
    archive = tmp_path / "a.nca"
    shutil.copy(packed, archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    clash = tmp_path / "clash"
    shutil.copytree(root / "src", clash)
    with pytest.raises(InputError, match=r"clash/0\.png: '0\.png' is already in .*a\.nca"):
        append(archive, clash, steps=5)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nca", "clash"]  # no partial file left


def test_cli_append_and_errors(base, tmp_path):
    root, packed = base
    archive = tmp_path / "a.nca"
    shutil.copy(packed, archive)
    result = runner.invoke(app, ["append", str(archive), str(_more(tmp_path / "more")), "--steps", "20", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 images added" in result.output and "the archive's own images" in result.output
    result = runner.invoke(app, ["append", str(tmp_path / "none.nca"), str(tmp_path / "more")])
    assert result.exit_code == 2 and result.stderr == f"error: {tmp_path / 'none.nca'}: no such archive file\n"
    with pytest.raises(NotAnArchiveError):
        append(tmp_path / "none.nca", tmp_path / "more")


def test_append_of_released_images(base, tmp_path, monkeypatch):
    """Beyond the resident budget images are released after the scan; append reads them again."""
    from archiver.collection import pool

    monkeypatch.setattr(pool, "RESIDENT_BYTES", 1)
    root, packed = base
    archive = tmp_path / "a.nca"
    shutil.copy(packed, archive)
    report = append(archive, _more(tmp_path / "more"), steps=20)
    assert report.images == 2 and verify(archive, decode=True).ok
