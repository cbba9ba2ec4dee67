"""Every user error: one `error: ...` line naming the file, exit code 2, nothing left behind."""

from __future__ import annotations


import pytest
from typer.testing import CliRunner

from archiver.cli import app

runner = CliRunner()


def fails(*args, match: str) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and match in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_empty_folder(tmp_path):
    (tmp_path / "in").mkdir()
    fails("pack", tmp_path / "in", "-o", tmp_path / "a.nca", match=f"{tmp_path / 'in'} contains no files")
    assert not (tmp_path / "a.nca").exists()


def test_missing_folder(tmp_path):
    fails("pack", tmp_path / "nope", "-o", tmp_path / "a.nca", match="no such folder")


def test_output_inside_input(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    fails("pack", tmp_path, "-o", tmp_path / "a.nca", match="is inside the input folder")


def test_unreadable_file(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    (src / "secret.bin").write_text("x")
    import archiver.pack as pack_mod

    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pack_mod, "load_image", deny)
    fails("pack", src, "-o", tmp_path / "a.nca", match=f"{src / 'secret.bin'}: cannot read (Permission denied)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("opt,value,match", [
    ("--quality", "0", "--quality must be an integer from 1 to 8, got 0"),
    ("--time-limit", "soon", "cannot read time limit 'soon'"),
    ("--device", "tpu", "--device must be auto, cpu or cuda"),
    ("--perceptual", "vgg", "--perceptual must be none, msssim or lpips, got 'vgg'"),
])  # fmt: skip
def test_bad_options(tmp_path, opt, value, match):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f.txt").write_text("x")
    fails("pack", tmp_path / "in", "-o", tmp_path / "a.nca", opt, value, match=match)


def test_lpips_without_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHIVER_LPIPS_WEIGHTS", raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f.txt").write_text("x")
    fails("pack", tmp_path / "in", "-o", tmp_path / "a.nca", "--gan", "--perceptual", "lpips",
          match="--perceptual lpips needs pretrained weights, which cannot be downloaded here")  # fmt: skip
    monkeypatch.setenv("ARCHIVER_LPIPS_WEIGHTS", str(tmp_path / "nowhere"))
    fails("pack", tmp_path / "in", "-o", tmp_path / "a.nca", "--perceptual", "lpips",
          match=f"{tmp_path / 'nowhere'}: LPIPS weights folder must hold alexnet-*.pth and alex.pth")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_extract_non_archive(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8 not an archive")
    fails("extract", tmp_path / "photo.jpg", "-o", tmp_path / "out",
          match=f"{tmp_path / 'photo.jpg'} is not an .nca archive (not an HDF5 file)")  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cmd", ["list", "info", "verify"])
def test_missing_archive(tmp_path, cmd):
    fails(cmd, tmp_path / "gone.nca", match=f"{tmp_path / 'gone.nca'}: no such archive file")


def test_files_only_archive_needs_no_model(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    result = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "a.nca"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "1 files stored as is" in result.output
    result = runner.invoke(app, ["extract", str(tmp_path / "a.nca"), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0 and (tmp_path / "out" / "a.txt").read_text() == "hello"


def test_real_process_exit_code_and_message(tmp_path):
    """The installed entry point (not just the in-process runner) maps errors to exit 2 and one line."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "archiver", "info", str(tmp_path / "gone.nca")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'gone.nca'}: no such archive file\n"
