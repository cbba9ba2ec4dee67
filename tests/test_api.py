"""archiver.open: names, info, read and images give exactly the pixels extract writes; errors are typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import archiver
from archiver.cli import app
from archiver.container.reader import ArchiveReader
from archiver.errors import ArchiverError, CorruptArchiveError, EntryNotFoundError, InputError
from conftest import build_mixed_tree

runner = CliRunner()
LOSSY_FORMATS = (".jpg",)  # written back re-encoded (JPEG q95): compared with extract --format png


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.output


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The mixed tree, packed briefly (pixel quality does not matter here), and extracted twice."""
    base = tmp_path_factory.mktemp("api")
    kinds = build_mixed_tree(base / "src")
    archive = base / "mixed.nca"
    cli("pack", base / "src", "-o", archive, "--max-steps", "40", "--refine", "0", "--quiet")
    cli("extract", archive, "-o", base / "out", "--quiet")
    cli("extract", archive, "-o", base / "png", "--format", "png", "--quiet")
    return base, archive, kinds


def expected_pixels(base: Path, name: str) -> np.ndarray:
    """What read() must give: the extracted file as Pillow loads it, as H×W×C (P as its colours)."""
    path = base / "out" / name
    if path.suffix in LOSSY_FORMATS:
        path = (base / "png" / name).with_suffix(".png")
    im = Image.open(path)
    array = np.asarray(im.convert("RGB") if im.mode == "P" else im)
    return array[:, :, None] if array.ndim == 2 else array


def test_names_in_archive_order_and_info(packed):
    base, archive, kinds = packed
    with archiver.open(archive) as arc:
        with ArchiveReader(archive) as reader:
            order = [e.name for e in reader.entries if e.name in kinds]
        assert arc.names() == order and sorted(order) == sorted(kinds)  # folders left out
        assert arc.image_names() == [n for n in order if kinds[n] != "raw"]
        assert len(arc) == len(kinds) and "notes.txt" in arc and "empty_dir" not in arc
        assert json.loads(json.dumps(arc.info())) == json.loads(cli("info", archive, "--json"))


def test_read_is_the_extracted_file(packed):
    base, archive, kinds = packed
    shapes = {"RGB": 3, "L": 1, "RGBA": 4, "P": 3}
    with archiver.open(archive, provider="cpu") as arc:
        for name, kind in kinds.items():
            got = arc.read(name)
            if kind == "raw":
                assert got == (base / "src" / name).read_bytes(), name
                continue
            assert got.dtype == np.uint8 and got.shape[2] == shapes[kind], (name, got.shape)
            np.testing.assert_array_equal(got, expected_pixels(base, name), err_msg=name)


def test_images_equal_read_whatever_the_batching(packed):
    base, archive, kinds = packed
    with archiver.open(archive, threads=1) as arc:
        for batch_size in (1, 2, 8):
            got = dict(arc.images(batch_size=batch_size))
            assert sorted(got) == sorted(arc.image_names())
            for name, pixels in got.items():
                np.testing.assert_array_equal(pixels, expected_pixels(base, name), err_msg=name)
        assert [n for n, _ in arc.images(["sub/gray.png"])] == ["sub/gray.png"]


def test_missing_and_wrong_names(packed):
    _, archive, _ = packed
    with archiver.open(archive) as arc:
        with pytest.raises(KeyError) as info:
            arc.read("nope.png")
        assert isinstance(info.value, EntryNotFoundError) and "'nope.png'" in str(info.value)
        with pytest.raises(EntryNotFoundError, match="'empty_dir'"):
            arc.read("empty_dir")  # a folder has no content
        with pytest.raises(InputError, match="'notes.txt' is a byte-exact file"):
            arc.images(["notes.txt"])
        with pytest.raises(EntryNotFoundError, match="'nope'"):
            arc.images(["nope"])  # checked at the call, not at the first next()


def test_closed_and_forked_handles_refuse(packed):
    _, archive, _ = packed
    arc = archiver.open(archive)
    arc._pid = -1  # as if this were a forked child of the process that opened it
    with pytest.raises(ArchiverError, match="cannot be used after a fork"):
        arc.read("odd_rgb.png")
    arc.close()
    with pytest.raises(ArchiverError, match="closed"):
        arc.read("notes.txt")


@pytest.mark.parametrize("victim", ["sub/alpha.png", "notes.txt"])
def test_damaged_record_names_the_entry_and_others_still_read(packed, tmp_path, victim):
    base, archive, kinds = packed
    damaged = tmp_path / "damaged.nca"
    shutil.copy(archive, damaged)
    with ArchiveReader(archive) as reader:
        entry = next(e for e in reader.entries if e.name == victim)
        data_offset = reader.data_offset()  # entry.offset counts from there (its group's block in v3)
        # Since format version 3 images of one coded size share a range-coded block: a damaged
        # block loses the whole group. Every other entry must still read.
        lost = {e.name for e in reader.group_members(entry)}
    raw = bytearray(damaged.read_bytes())
    raw[data_offset + entry.offset + 6] ^= 0x10
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match="allow_damaged=True"):
        archiver.open(damaged)
    with archiver.open(damaged, allow_damaged=True) as arc:
        for name, kind in kinds.items():
            if name in lost:
                with pytest.raises(CorruptArchiveError, match=f"checksum mismatch in entry '{name}'"):
                    arc.read(name)
            elif kind == "raw":
                assert arc.read(name) == (base / "src" / name).read_bytes(), name
            else:
                np.testing.assert_array_equal(arc.read(name), expected_pixels(base, name), err_msg=name)
        if victim in arc.image_names():
            with pytest.raises(CorruptArchiveError, match="checksum mismatch in entry"):
                dict(arc.images())
        failed: list[str] = []
        got = dict(arc.images(on_error=lambda name, exc: failed.append(name)))
        assert sorted(failed) == sorted(lost & set(arc.image_names()))
        assert sorted(got) == sorted(set(arc.image_names()) - lost)


def test_blas_is_single_threaded_while_decoding_and_restored_after():
    """images() and read() keep numpy's BLAS on one thread (its busy-waiting starved the decoding
    pipeline) and give the process its setting back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    golden = Path(__file__).parent / "golden" / "v3-pyramid-mixed.nca"
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        if not before or max(before) < 2:
            pytest.skip("numpy's BLAS is single-threaded here")
        seen = []
        with archiver.open(golden) as arc:
            for _name, _pixels in arc.images():
                seen.append(blas_threads())
            names = arc.image_names()
            arc.read(names[0])
        assert seen and all(max(t) == 1 for t in seen)
        assert blas_threads() == before


@pytest.mark.parametrize("spin, expected", [(True, None), (False, "0")])
def test_runtime_spinning_follows_the_handle(spin, expected):
    """archiver.open keeps ONNX Runtime's default (fork-safe) spinning; extract's handle (spin=False)
    stops the workers from busy-waiting beside its entropy and writer threads."""
    from archiver.api import Archive

    golden = Path(__file__).parent / "golden" / "v3-pyramid-mixed.nca"
    with Archive(golden, "cpu", spin=spin) as arc:
        arc.decoder._ensure()
        options = arc.decoder._decoder.session.get_session_options()
        try:
            value = options.get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:  # onnxruntime raises when the entry was never set
            value = None
        assert value == expected
