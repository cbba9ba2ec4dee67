"""Archive safety: bad input, corruption, interruption and hostile archives (issue: archive safety)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from archiver.cli import app
from archiver.container.entries import Entry
from archiver.container.format import EntryKind, ImageMode
from archiver.container.reader import ArchiveReader
from archiver.container.writer import ArchiveWriter
from archiver.errors import ArchiverError, CorruptArchiveError
from archiver.extract import extract
from archiver.inspect import verify
from conftest import assert_flip_detected, smooth_image, write_images

runner = CliRunner()
GOLDEN = Path(__file__).resolve().parent / "golden" / "v1-mixed.nca"
#: Inputs each fuzz property tries (the longer run is benchmarks/fuzz.py).
FUZZ_EXAMPLES = 150


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def build_bad_tree(root: Path) -> dict[bytes, str]:
    """Every kind of awkward input; returns {relative path: expected treatment}."""
    rng = np.random.default_rng(5)
    root.mkdir()
    good = _png(smooth_image(rng, 40, 32))
    (root / "good.png").write_bytes(good)
    (root / "zero.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    bad_crc = bytearray(good)
    bad_crc[40] ^= 0xFF  # inside the first IDAT/IHDR data: the chunk CRC no longer matches
    (root / "bad_crc.png").write_bytes(bytes(bad_crc))
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(root / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (16, 16)).astype(np.uint16)).save(root / "deep.png")
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    (root / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name")
    (root / "Case.txt").write_bytes(b"upper")
    (root / "case.txt").write_bytes(b"lower")
    (root / "dir").mkdir()
    (root / "dir" / "inner.txt").write_bytes(b"inner")
    os.symlink("good.png", root / "link_to_file")
    os.symlink("dir", root / "link_to_dir")
    os.symlink("loop", root / "loop")
    return {
        b"good.png": "image", b"zero.png": "raw", b"truncated.png": "raw", b"bad_crc.png": "raw",
        b"cmyk.jpg": "raw", b"deep.png": "raw", b"anim.gif": "raw", b"caf\xe9.txt": "raw",
        b"Case.txt": "raw", b"case.txt": "raw", b"dir/inner.txt": "raw",
        b"link_to_file": "link", b"link_to_dir": "link", b"loop": "link",
    }  # fmt: skip


@pytest.fixture(scope="module")
def bad_archive(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    expected = build_bad_tree(base / "src")
    result = runner.invoke(app, ["pack", str(base / "src"), "-o", str(base / "bad.nca"), "--max-steps", "30"])
    assert result.exit_code == 0, result.output
    return base, expected, result


def test_bad_inputs_follow_the_policy(bad_archive, tmp_path):
    base, expected, result = bad_archive
    assert "1 images coded" in result.output
    for name in ("zero.png", "truncated.png", "bad_crc.png", "cmyk.jpg: mode CMYK", "deep.png: mode I;16",
                 "anim.gif: GIF with 2 frames"):  # fmt: skip
        assert f"as is: {name}" in result.output, name
    out = tmp_path / "out"
    extract(base / "bad.nca", out)
    src, outb = os.fsencode(base / "src"), os.fsencode(out)
    for rel, kind in expected.items():
        a, b = os.path.join(src, rel), os.path.join(outb, rel)
        if kind == "raw":
            assert open(b, "rb").read() == open(a, "rb").read(), rel
        elif kind == "link":
            assert os.path.islink(b) and os.readlink(b) == os.readlink(a), rel
        else:
            assert Image.open(b).size == Image.open(a).size


def test_strict_refuses_fallbacks(bad_archive, tmp_path):
    base, _, _ = bad_archive
    result = runner.invoke(app, ["pack", str(base / "src"), "-o", str(tmp_path / "s.nca"), "--strict"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {base / 'src' / 'anim.gif'}: would be stored as is "
                             "(GIF with 2 frames (animation or multi-page)); --strict refuses fallbacks\n")
    assert not (tmp_path / "s.nca").exists()


# -- corruption ------------------------------------------------------------------------------------
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_is_detected(tmp_path, data):
    pos = data.draw(st.integers(0, GOLDEN.stat().st_size - 1), label="offset")
    assert_flip_detected(GOLDEN, tmp_path, pos, data.draw(st.integers(1, 255), label="xor"))


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, GOLDEN.stat().st_size - 1))
def test_truncation_is_detected(tmp_path, cut):
    path = tmp_path / "cut.nca"
    path.write_bytes(GOLDEN.read_bytes()[:cut])
    with pytest.raises(ArchiverError):
        report = verify(path)
        if not report.ok:
            raise CorruptArchiveError("detected")


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_extract_keeps_going(tmp_path, data):
    """Damage inside the records: intact entries still come out, damaged ones are reported, no traceback."""
    with ArchiveReader(GOLDEN) as r:
        start = r._file["entries/data"].id.get_offset()
        end = start + r._file["entries/data"].shape[0]
    raw = bytearray(GOLDEN.read_bytes())
    raw[data.draw(st.integers(start, end - 1))] ^= 0x55
    path = tmp_path / "d.nca"
    path.write_bytes(bytes(raw))
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    report = extract(path, out, keep_going=True, force=True)
    assert len(report.failed) == 1
    assert report.images + report.files + len(report.failed) == 3
    assert not list(out.rglob("*.partial"))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, GOLDEN.stat().st_size - 1))
def test_damaged_anywhere_salvage_terminates(tmp_path, pos):
    """Damage anywhere, HDF5's own metadata included: a salvage ends in a report or an ArchiverError
    (the probe reads the damaged file in a child process first), never a hang or another exception."""
    raw = bytearray(GOLDEN.read_bytes())
    raw[pos] ^= 0xFF
    path = tmp_path / "d.nca"
    path.write_bytes(bytes(raw))
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    try:
        report = extract(path, out, keep_going=True, force=True)
    except ArchiverError:
        return
    assert report.images + report.files + len(report.failed) >= 1
    assert not list(out.rglob("*.partial"))


def test_keep_going_exit_code(tmp_path):
    with ArchiveReader(GOLDEN) as r:
        entry = next(e for e in r.entries if e.name == "sub/readme.txt")
        start = r._file["entries/data"].id.get_offset()
    raw = bytearray(GOLDEN.read_bytes())
    raw[start + entry.offset + 2] ^= 0x01
    (tmp_path / "d.nca").write_bytes(bytes(raw))
    result = runner.invoke(app, ["extract", str(tmp_path / "d.nca"), "-o", str(tmp_path / "o"), "--keep-going"])
    assert result.exit_code == 1
    assert "error: sub/readme.txt: not extracted:" in result.stderr
    assert (tmp_path / "o" / "rgb.png").exists() and not (tmp_path / "o" / "sub" / "readme.txt").exists()
    result = runner.invoke(app, ["extract", str(tmp_path / "d.nca"), "-o", str(tmp_path / "o2")])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path / 'd.nca'}: file checksum mismatch: the archive is damaged "
                             "(extract --keep-going salvages the intact entries)\n")  # fmt: skip
    assert not (tmp_path / "o2").exists()


# -- interruption ----------------------------------------------------------------------------------
def _slow_pack(tmp_path: Path) -> tuple[list[str], Path]:
    src = write_images(tmp_path / "src", 3, 96, 80)
    out = tmp_path / "a.nca"
    return [sys.executable, "-m", "archiver", "pack", str(src), "-o", str(out), "--time-limit", "2m"], out


def _wait_for_training(tmp_path: Path, proc) -> None:
    """Block until the pack in ``proc`` is training (its first checkpoint exists), whatever the load."""
    ckpt = tmp_path / ".a.nca.resume" / "train.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "pack never reached training"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_pack_leaves_nothing(tmp_path, sig):
    cmd, out = _slow_pack(tmp_path)
    # preexec_fn: a shell without job control starts background jobs with SIGINT ignored, a child
    # inherits that, and Python then installs no Ctrl-C handler: the pack would train on (this test
    # failed that way whenever the suite ran in the background). The child gets SIGINT's default.
    proc = subprocess.Popen(cmd + ["--checkpoint-every", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    _wait_for_training(tmp_path, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted: nothing was left half-written (pack --resume continues from the last checkpoint)"
    )
    # No archive and no temporary file; only the training checkpoint, kept for --resume.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.nca.resume", "src"]


def test_killed_pack_is_cleaned_by_the_next_run(tmp_path):
    cmd, out = _slow_pack(tmp_path)
    proc = subprocess.Popen(cmd + ["--checkpoint-every", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_training(tmp_path, proc)
    proc.kill()
    proc.wait()
    assert not out.exists()
    (tmp_path / ".a.nca.partial").write_bytes(b"left by a pack killed while writing")
    done = subprocess.run(cmd[:-2] + ["--max-steps", "5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nca", "src"]


def test_disk_full_while_writing(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f.txt").write_text("x")
    import errno

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(ArchiveWriter, "_write_data", full)
    result = runner.invoke(app, ["pack", str(tmp_path / "in"), "-o", str(tmp_path / "a.nca")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / '.a.nca.partial'}: No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# -- hostile archives ------------------------------------------------------------------------------
def _hostile(path: Path, name: bytes, record: bytes = b"", kind=EntryKind.FILE, **fields) -> Path:
    data = zstandard.ZstdCompressor().compress(record) if kind is EntryKind.FILE else record
    import hashlib

    with ArchiveWriter(path) as w:
        entry = Entry(path=name, kind=kind, size=len(record), source_sha256=hashlib.sha256(record).digest(), **fields)
        if kind is EntryKind.IMAGE:  # version 3: an image is its latent in a group, not a record
            from archiver.codec.tables import build_tables

            latent = np.zeros((2, 1, 1), np.int32)
            w.write_tables(build_tables([latent]))
            w.add_image(entry, latent)
        else:
            w.add(entry, data)
        for key in ("config", "training", "summary"):
            w.set_json(key, {})
        w.commit()
    return path


@pytest.mark.parametrize("name", [b"../evil.txt", b"/abs/evil.txt", b"a/../../evil.txt", b"C:/evil.txt",
                                  b"a\\..\\evil.txt", b"./x", b"a//b"])  # fmt: skip
def test_hostile_names_never_write_outside(tmp_path, name):
    archive = _hostile(tmp_path / "h.nca", name, b"payload")
    out = tmp_path / "deep" / "out"
    with pytest.raises(CorruptArchiveError, match="would write outside the output folder"):
        extract(archive, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.nca"]


def test_symlinked_parent_in_output_is_refused(tmp_path):
    archive = _hostile(tmp_path / "h.nca", b"sub/x.txt", b"payload")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "sub")
    with pytest.raises(CorruptArchiveError, match="leads outside"):
        extract(archive, out, force=True)
    assert list(outside.iterdir()) == []


def test_archive_link_then_file_through_it(tmp_path):
    """A link entry and a file 'under' it: the file cannot be written through the link."""
    import hashlib

    with ArchiveWriter(tmp_path / "h.nca") as w:
        w.add(Entry(path=b"a", kind=EntryKind.SYMLINK), os.fsencode(tmp_path / "outside"))
        w.add(Entry(path=b"a/x.txt", kind=EntryKind.FILE, size=1, source_sha256=hashlib.sha256(b"x").digest()),
              zstandard.ZstdCompressor().compress(b"x"))  # fmt: skip
        for key in ("config", "training", "summary"):
            w.set_json(key, {})
        w.commit()
    (tmp_path / "outside").mkdir()
    with pytest.raises(CorruptArchiveError, match="entry 'a/x.txt' lies inside a symlink entry"):
        extract(tmp_path / "h.nca", tmp_path / "out")
    assert list((tmp_path / "outside").iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_declared_sizes_checked_before_allocation(tmp_path):
    archive = _hostile(tmp_path / "h.nca", b"big.png", b"", kind=EntryKind.IMAGE, width=1 << 20, height=1 << 20,
                       mode=ImageMode.RGB, format="PNG")  # fmt: skip
    with pytest.raises(CorruptArchiveError, match="declares an image over 65536 px a side"):
        ArchiveReader(archive)


def test_decompression_bomb_stops_at_declared_size(tmp_path):
    import hashlib

    bomb = zstandard.ZstdCompressor().compress(b"\0" * (50 << 20))  # 50 MiB of zeros in a few KiB
    with ArchiveWriter(tmp_path / "h.nca") as w:
        w.add(Entry(path=b"small.bin", kind=EntryKind.FILE, size=10, source_sha256=hashlib.sha256(b"").digest()), bomb)
        for key in ("config", "training", "summary"):
            w.set_json(key, {})
        w.commit()
    with pytest.raises(CorruptArchiveError, match="inflates past its size"):
        extract(tmp_path / "h.nca", tmp_path / "out")
    assert not (tmp_path / "out" / "small.bin").exists()
    assert not list((tmp_path / "out").glob(".*partial"))


def test_killed_pack_resumes(tmp_path):
    """SIGKILL mid-training, then `pack --resume` with the same options finishes from the checkpoint."""
    cmd, out = _slow_pack(tmp_path)
    cmd = cmd[:-2] + ["--time-limit", "20", "--checkpoint-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / ".a.nca.resume" / "train.pt"
    _wait_for_training(tmp_path, proc)
    time.sleep(2)
    proc.kill()
    proc.wait()
    assert ckpt.exists() and not out.exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nca", "src"]
    # other options (a shorter pack), --resume: no checkpoint is left, so a fresh pack
    other = subprocess.run(cmd[:-2] + ["--time-limit", "4"] + ["--resume", "--force"], capture_output=True, text=True)
    assert other.returncode == 0, other.stderr


def test_huge_image_is_kept_as_is(tmp_path, monkeypatch):
    """Over the coding limit (100 MP; lowered here) an image is stored byte-exact with the reason."""
    from archiver.collection import images as images_mod

    monkeypatch.setattr(images_mod, "MAX_CODED_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.fromarray(smooth_image(np.random.default_rng(0), 40, 30)).save(path)
    src, why = images_mod.load_image(path)
    assert src is None and why == "40x30 is over 0 megapixels"


def test_file_vanishing_during_pack(tmp_path, monkeypatch):
    """A file listed by the scan but gone when it is read: a clear error naming it, no archive."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "b.txt").write_text("b")
    import archiver.pack as pack_mod

    real = pack_mod.scan_tree

    def scan_then_delete(root):
        items = real(root)
        (src / "b.txt").unlink()
        return items

    monkeypatch.setattr(pack_mod, "scan_tree", scan_then_delete)
    result = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "a.nca")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {src / 'b.txt'}: cannot read (No such file or directory)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
