import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.codec.context import fit_context_tables
from archiver.codec.tables import build_tables
from archiver.codec.weights import pack_arrays
from archiver.container.digest import write_file_digest
from archiver.container.entries import Entry
from archiver.container.format import FORMAT_VERSION, MAGIC, EntryKind, ImageMode
from archiver.container.reader import ArchiveReader
from archiver.container.writer import ArchiveWriter, partial_path
from archiver.errors import CorruptArchiveError, FormatVersionError, NotAnArchiveError

_names = st.lists(
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"/" not in b), unique=True, max_size=8
)


def _write(path: Path, entries_records, *, tables=None, model=None) -> int:
    with ArchiveWriter(path) as w:
        if model is not None:
            w.write_model(*model)
        if tables is not None:
            w.write_tables(tables)
        for entry, record in entries_records:
            w.add(entry, record)
        for name in ("config", "training", "summary"):
            w.set_json(name, {"name": name})
        return w.commit()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=_names, data=st.data())
def test_round_trip(tmp_path, names, data):
    path = tmp_path / "a.nca"
    items = []
    for i, name in enumerate(names):
        kind = data.draw(st.sampled_from(list(EntryKind)))
        record = data.draw(st.binary(max_size=300))
        entry = Entry(
            path=name, kind=kind, mtime_ns=data.draw(st.integers(0, 2**62)), perm=0o640, size=len(record),
            width=i, height=2 * i, mode=ImageMode.RGB if kind is EntryKind.IMAGE else ImageMode.NONE,
            format="PNG" if kind is EntryKind.IMAGE else "", psnr=30.5 if kind is EntryKind.IMAGE else math.nan,
            note="why" if kind is EntryKind.FILE else "",
        )  # fmt: skip
        items.append((entry, record))
    size = _write(path, items)
    assert size == path.stat().st_size
    with ArchiveReader(path) as r:
        assert r.format_version == FORMAT_VERSION
        assert r.config == {"name": "config"}
        assert len(r.entries) == len(items)
        for got, (want, record) in zip(r.entries, items):
            assert (got.path, got.kind, got.mtime_ns, got.size, got.width, got.height, got.mode, got.note) == (
                want.path, want.kind, want.mtime_ns, want.size, want.width, want.height, want.mode, want.note
            )  # fmt: skip
            assert r.read_record(got) == record


def test_model_and_tables_round_trip(tmp_path, rng):
    latents = [rng.integers(-3, 4, (3, 2, 2)).astype(np.int32)]
    tables = build_tables(latents)
    arrays = {"w.q": np.ones((2, 1, 1, 1), np.int8), "w.scale": np.ones(2, np.float32)}
    _write(tmp_path / "m.nca", [], tables=tables, model=pack_arrays(arrays))
    with ArchiveReader(tmp_path / "m.nca") as r:
        read = r.tables()
        assert (read.spatial, read.buckets, read.counts_q) == (1, 1, None)
        np.testing.assert_array_equal(read.freqs[:, 0, 0, :], tables.freqs)
        np.testing.assert_array_equal(r.model_arrays()["w.q"], arrays["w.q"])


def test_context_tables_round_trip(tmp_path, rng):
    """Context tables come back exactly: same thresholds, counts and rebuilt frequencies."""
    latents = [rng.integers(-6, 7, (4, 9, 7)).astype(np.int32) for _ in range(5)]
    tables, _ = fit_context_tables(lambda: iter(latents), [(3, 2)])
    _write(tmp_path / "c.nca", [], tables=tables, model=pack_arrays({"w": np.ones(1, np.float32)}))
    with ArchiveReader(tmp_path / "c.nca") as r:
        read = r.tables()
    assert (read.spatial, read.buckets) == (3, 2)
    for name in ("offsets", "lengths", "modes", "spatial_thresholds", "channel_thresholds", "freqs", "counts_q"):
        np.testing.assert_array_equal(getattr(read, name), getattr(tables, name))


def test_small_overhead(tmp_path):
    """The container itself must stay small: it is counted in every archive's bytes."""
    size = _write(tmp_path / "s.nca", [(Entry(path=b"x", kind=EntryKind.FILE, size=1), b"x")])
    assert size < 16_000


def test_flipped_record_byte_detected(tmp_path):
    path = tmp_path / "f.nca"
    _write(path, [(Entry(path=b"x", kind=EntryKind.FILE), b"payload-bytes")])
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"payload-bytes")
    raw[pos] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match="file checksum mismatch: the archive is damaged"):
        ArchiveReader(path)
    with ArchiveReader(path, allow_damaged=True) as r, pytest.raises(CorruptArchiveError, match="checksum mismatch in entry 'x'"):
        r.read_record(r.entries[0])


def test_abort_leaves_nothing(tmp_path):
    path = tmp_path / "a.nca"
    with pytest.raises(RuntimeError):
        with ArchiveWriter(path) as w:
            w.add(Entry(path=b"x", kind=EntryKind.FILE), b"1")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_is_replaced(tmp_path):
    path = tmp_path / "a.nca"
    partial_path(path).write_bytes(b"stale")
    _write(path, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nca"]


def test_not_hdf5(tmp_path):
    path = tmp_path / "x.nca"
    path.write_bytes(b"hello")
    with pytest.raises(NotAnArchiveError, match=r"x.nca is not an .nca archive \(not an HDF5 file\)"):
        ArchiveReader(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs["magic"] = "something-else"
    with pytest.raises(NotAnArchiveError, match="magic 'something-else', expected 'archiver-nca'"):
        ArchiveReader(path)


def test_newer_version_refused(tmp_path):
    path = tmp_path / "v.nca"
    _write(path, [])
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(FORMAT_VERSION + 1)
    write_file_digest(path)  # as a newer archiver would have written it: intact, just newer
    with pytest.raises(FormatVersionError, match=f"has format_version {FORMAT_VERSION + 1}; this archiver reads"):
        ArchiveReader(path)


def test_magic_constant():
    assert MAGIC == "archiver-nca"


@pytest.mark.parametrize("version, model", [(1, "context"), (2, "hyper")])
def test_entropy_model_unknown_to_the_version_is_refused(tmp_path, rng, version, model):
    """A version-1 archive cannot hold context tables, and no version defines other models."""
    from archiver.container.digest import index_digest

    latents = [rng.integers(-6, 7, (2, 6, 6)).astype(np.int32) for _ in range(3)]
    tables, _ = fit_context_tables(lambda: iter(latents), [(2, 2)])
    path = tmp_path / "m.nca"
    _write(path, [], tables=tables, model=pack_arrays({"w": np.ones(1, np.float32)}))
    with h5py.File(path, "r+") as f:  # rewritten consistently, as a buggy writer would have made it
        f.attrs["format_version"] = np.int64(version)
        f["model/prior"].attrs["model"] = model
        f.attrs["index_sha256"] = index_digest(f)
    write_file_digest(path)
    with ArchiveReader(path) as r, pytest.raises(CorruptArchiveError, match=f"entropy model '{model}', which format version {version} does not define"):
        r.tables()


def test_string_attributes_are_fixed_length(tmp_path, rng):
    """Version 2 keeps strings out of HDF5's global heap (a 4 KiB collection per archive)."""
    latents = [rng.integers(-3, 4, (2, 4, 4)).astype(np.int32)]
    tables, _ = fit_context_tables(lambda: iter(latents), [(2, 1)])
    path = tmp_path / "s.nca"
    _write(path, [(Entry(path=b"x", kind=EntryKind.FILE, size=1, note="why"), b"x")], tables=tables,
           model=pack_arrays({"w": np.ones(1, np.float32)}))  # fmt: skip
    with h5py.File(path, "r") as f:
        owners = [f, f["entries"], f["model/decoder"], f["model/prior"]]
        for owner in owners:
            for name in owner.attrs:
                tid = owner.attrs.get_id(name).get_type()
                if isinstance(tid, h5py.h5t.TypeStringID):
                    assert not tid.is_variable_str(), f"{owner.name}@{name} is a variable-length string"
    with ArchiveReader(path) as r:
        assert r.config == {"name": "config"} and r.entries[0].note == "why"
