import zlib
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
from archiver.container.format import FORMAT_VERSION, MAGIC, USERBLOCK_BYTES, EntryKind, ImageMode
from archiver.container.reader import ArchiveReader
from archiver.container.records import decode_image_record
from archiver.container.writer import GROUP_IMAGES, ArchiveWriter, partial_path
from archiver.codec.entropy import LatentCoder
from archiver.errors import CorruptArchiveError, FormatVersionError, NotAnArchiveError

_names = st.lists(
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"/" not in b), unique=True, max_size=8
)
_LATENT = (3, 2, 2)


def _tables(seed: int = 0, candidates=((1, 1),)):
    rng = np.random.default_rng(seed)
    latents = [rng.integers(-3, 4, _LATENT).astype(np.int32) for _ in range(20)]
    return fit_context_tables(lambda: iter(latents), list(candidates))[0]


def _image(path: bytes, i: int = 0, **kw) -> Entry:
    fields = dict(width=32, height=32, mode=ImageMode.RGB, format="PNG", psnr=24.5 + i / 100, pixel_crc32=i, mtime_ns=10**18 + i)
    return Entry(path=path, kind=EntryKind.IMAGE, **{**fields, **kw})


def _write(path: Path, entries_records, *, tables=None, model=None, images=()) -> int:
    """Write an archive: (entry, record) pairs, then (entry, latent, info, blobs) images."""
    with ArchiveWriter(path) as w:
        if model is not None:
            w.write_model(*model)
        if tables is not None or images:
            w.write_tables(tables if tables is not None else _tables())
        for entry, record in entries_records:
            w.add(entry, record)
        for entry, latent, info, blobs in images:
            w.add_image(entry, latent, info, blobs)
        for name in ("config", "training", "summary"):
            w.set_json(name, {"name": name} if name != "training" else {"crop": 32})
        return w.commit()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=_names, data=st.data())
def test_round_trip(tmp_path, names, data):
    path = tmp_path / "a.nca"
    items, images = [], []
    for i, name in enumerate(names):
        kind = data.draw(st.sampled_from(list(EntryKind)))
        mtime = data.draw(st.integers(0, 2**62))
        if kind is EntryKind.IMAGE:
            latent = np.asarray(data.draw(st.lists(st.integers(-3, 3), min_size=12, max_size=12)), np.int32)
            blobs = data.draw(st.dictionaries(st.sampled_from(["alpha", "exif", "icc"]), st.binary(max_size=40)))
            info = data.draw(st.sampled_from([{}, {"dpi": [72, 72]}]))
            images.append((_image(name, i, mtime_ns=mtime), latent.reshape(_LATENT), info, blobs))
            continue
        record = b"" if kind is EntryKind.DIRECTORY else data.draw(st.binary(min_size=1, max_size=300))
        entry = Entry(path=name, kind=kind, mtime_ns=mtime, perm=0o640, size=len(record),
                      note="why" if kind is EntryKind.FILE else "")  # fmt: skip
        items.append((entry, record))
    size = _write(path, items, images=images)
    assert size == path.stat().st_size
    with ArchiveReader(path) as r:
        assert r.format_version == FORMAT_VERSION
        assert r.config == {"name": "config"}
        assert len(r.entries) == len(items) + len(images)
        got = {e.path: e for e in r.entries}
        for want, record in items:
            e = got[want.path]
            assert (e.kind, e.mtime_ns, e.size, e.perm, e.note) == (want.kind, want.mtime_ns, want.size, want.perm, want.note)
            assert r.read_record(e) == record
        for want, latent, info, blobs in images:
            e = got[want.path]
            assert (e.width, e.height, e.mode, e.format, e.mtime_ns) == (32, 32, ImageMode.RGB, "PNG", want.mtime_ns)
            assert e.psnr == pytest.approx(want.psnr, abs=0.005)
            back, record = r.read_image(e)
            np.testing.assert_array_equal(back, latent)
            assert (record.info, record.blobs) == (info, blobs)
            # the version-2 view of the same image (what decode.py reads)
            old = decode_image_record(r.read_record(e))
            np.testing.assert_array_equal(LatentCoder(r.tables()).decode(old.latent, 2, 2), latent)


def _thumbnails(n: int, seed: int = 0, icc: bytes | None = None):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        blobs = {"icc": icc} if icc is not None else {}
        out.append((_image(b"t/%05d.png" % i, i), rng.integers(-3, 4, _LATENT).astype(np.int32), {}, blobs))
    return out


def test_one_entry_from_a_packed_group(tmp_path):
    """An image in the middle of a group reads back exactly, alone, without reading the others."""
    images = _thumbnails(3 * GROUP_IMAGES // 2)
    path = tmp_path / "g.nca"
    _write(path, [], images=images)
    with ArchiveReader(path) as r:
        assert len([b for b in r.blocks if b.is_group]) == 2
        e = r.entries[GROUP_IMAGES + 7]
        assert (e.block, e.member) == (r.entries[GROUP_IMAGES].block, 7)
        latent, _ = r.read_image(e)
        np.testing.assert_array_equal(latent, images[GROUP_IMAGES + 7][1])
        assert len(r._groups) == 1  # only that group was decoded


def test_groups_cost_almost_nothing_per_image(tmp_path):
    """2,000 thumbnails: names, times, PSNRs, checksums and index under 6 bytes an image plus 2 kB."""
    rng = np.random.default_rng(1)
    images = _thumbnails(2000)
    mtime = 10**18
    for entry, *_ in images:
        mtime += int(rng.integers(10_000_000, 25_000_000))
        entry.mtime_ns, entry.psnr = mtime, float(rng.normal(24, 2))
    path = tmp_path / "t.nca"
    size = _write(path, [], images=images)
    from archiver.inspect import byte_breakdown

    with ArchiveReader(path) as r:
        parts = byte_breakdown(r, size)
    other = size - parts["model"] - parts["model_index"] - parts["latents"]
    assert other <= 6 * 2000 + 2000, parts


def test_shared_blobs_are_stored_once(tmp_path):
    icc = bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8))
    path = tmp_path / "s.nca"
    size = _write(path, [], images=_thumbnails(10, icc=icc))
    assert size < 3000 + 4000
    with ArchiveReader(path) as r:
        assert all(r.read_image(e)[1].blobs == {"icc": icc} for e in r.entries)


def test_damaged_group_costs_its_group_only(tmp_path):
    """A flipped byte in one group: its members fail, naming the group; every other entry reads."""
    images = _thumbnails(GROUP_IMAGES + 10)
    path = tmp_path / "d.nca"
    _write(path, [(Entry(path=b"z.txt", kind=EntryKind.FILE, size=4), b"text")], images=images)
    with ArchiveReader(path) as r:
        first = r.blocks[r.entries[-1].block]  # the second, small group
        data_at = r.data_offset()
    raw = bytearray(path.read_bytes())
    raw[data_at + first.offset + 1] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match="file checksum mismatch"):
        ArchiveReader(path)
    with ArchiveReader(path, allow_damaged=True) as r:
        bad = [e for e in r.entries if e.block == r.entries[-1].block]
        assert len(bad) == 10
        for e in bad:
            with pytest.raises(CorruptArchiveError, match=r"checksum mismatch in entry 't/\d+.png' \(image group \d+ of 10 images"):
                r.read_image(e)
        intact = [e for e in r.entries if e.kind is EntryKind.IMAGE and e.block != bad[0].block]
        assert len(intact) == GROUP_IMAGES
        for e in intact:
            np.testing.assert_array_equal(r.read_image(e)[0], images[int(e.path[2:7])][1])
        assert r.read_record(r.entries[0]) == b"text"


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
    """The container itself must stay small: it is counted in every archive's bytes (version 2: 10 kB)."""
    size = _write(tmp_path / "s.nca", [(Entry(path=b"x", kind=EntryKind.FILE, size=1), b"x")])
    assert size < 2_000


def test_every_flipped_byte_is_detected_on_open(tmp_path):
    path = tmp_path / "e.nca"
    _write(path, [(Entry(path=b"x", kind=EntryKind.FILE, size=1), b"x")], images=_thumbnails(5))
    raw = path.read_bytes()
    for pos in range(USERBLOCK_BYTES, len(raw), 3):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x10
        path.write_bytes(bytes(flipped))
        with pytest.raises(CorruptArchiveError, match="file checksum mismatch"):
            ArchiveReader(path)


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
def test_entropy_model_unknown_to_the_version_is_refused(tmp_path, version, model):
    """A version-1 archive cannot hold context tables, and no version defines other models."""
    import shutil

    from archiver.container.digest import index_digest

    path = tmp_path / "m.nca"
    shutil.copy(Path(__file__).parents[1] / "golden" / "v2-mixed.nca", path)
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
        assert sorted(f) == ["data", "index"]  # version 3: two datasets, no groups
        owners = [f]
        for owner in owners:
            for name in owner.attrs:
                tid = owner.attrs.get_id(name).get_type()
                if isinstance(tid, h5py.h5t.TypeStringID):
                    assert not tid.is_variable_str(), f"{owner.name}@{name} is a variable-length string"
    with ArchiveReader(path) as r:
        assert r.config == {"name": "config"} and r.entries[0].note == "why"


def test_kept_groups_keep_their_pixel_check(tmp_path):
    """What append does to a version-3 archive: old groups re-added whole keep their pixel check
    (their members' own pixel CRCs are not stored); new images of the same shape form new groups."""
    first = tmp_path / "a.nca"
    _write(first, [], images=_thumbnails(10))
    second = tmp_path / "b.nca"
    with ArchiveReader(first) as r, ArchiveWriter(second) as w:
        w.write_tables(r.tables())
        check = r.blocks[r.entries[0].block].pixel_crc32
        for e in r.entries:
            latent, record = r.read_image(e)
            w.keep_group(e.block, r.blocks[e.block].pixel_crc32, len(r.group_members(e)))
            w.add_image(e, latent, record.info, record.blobs, group=e.block)
        w.add_image(_image(b"t/new.png", 99), np.zeros(_LATENT, np.int32))
        for name in ("config", "training", "summary"):
            w.set_json(name, {"crop": 32})
        w.commit()
    with ArchiveReader(second) as r:
        old, new = r.entries[0], r.entries[-1]
        assert r.blocks[old.block].pixel_crc32 == check and len(r.group_members(old)) == 10
        assert new.block != old.block and r.blocks[new.block].pixel_crc32 == zlib.crc32((99).to_bytes(4, "little"))
