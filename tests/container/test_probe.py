"""The salvage probe: damaged HDF5 metadata must end in an error, never in a hang or a crash."""

import sys
import time

import pytest

from archiver.container import probe
from archiver.container.entries import Entry
from archiver.container.format import EntryKind
from archiver.container.reader import ArchiveReader
from archiver.container.writer import ArchiveWriter
from archiver.errors import CorruptArchiveError


def _damaged(tmp_path):
    path = tmp_path / "d.nca"
    with ArchiveWriter(path) as w:
        w.add(Entry(path=b"a", kind=EntryKind.FILE, size=13), b"payload-bytes")
        w.add(Entry(path=b"b", kind=EntryKind.FILE, size=5), b"other")
        for name in ("config", "training", "summary"):
            w.set_json(name, {})
        w.commit()
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"payload-bytes")] ^= 0x01
    path.write_bytes(bytes(raw))
    return path


def test_probe_passes_a_salvageable_archive(tmp_path):
    path = _damaged(tmp_path)
    probe.probe_damaged(path)  # finishes: the damage is in a record, HDF5 reads the rest
    with ArchiveReader(path, allow_damaged=True) as r:
        assert r.read_record(r.entries[1]) == b"other"


def test_hanging_hdf5_is_stopped(tmp_path, monkeypatch):
    """A child that never finishes (what HDF5 did on one fuzzed archive) is killed at the time limit."""
    path = _damaged(tmp_path)
    monkeypatch.setattr(probe, "_command", lambda p: [sys.executable, "-c", "while True: pass"])
    monkeypatch.setattr(probe, "PROBE_MIN_SECONDS", 1.0)
    start = time.monotonic()
    with pytest.raises(CorruptArchiveError, match=r"d\.nca: damaged beyond salvage: its HDF5 structure could not be read within 1 s"):
        ArchiveReader(path, allow_damaged=True)
    assert time.monotonic() - start < 10


def test_crashing_hdf5_is_reported(tmp_path, monkeypatch):
    path = _damaged(tmp_path)
    monkeypatch.setattr(probe, "_command", lambda p: [sys.executable, "-c", "import os; os.abort()"])
    with pytest.raises(CorruptArchiveError, match=r"damaged beyond salvage: reading its HDF5 structure failed \(exit -6"):
        probe.probe_damaged(path)


def test_runaway_allocation_is_reported(tmp_path, monkeypatch):
    path = _damaged(tmp_path)
    monkeypatch.setattr(probe, "_command", lambda p: [sys.executable, "-c", "x = bytearray(8 << 30)"])
    with pytest.raises(CorruptArchiveError, match="MemoryError"):
        probe.probe_damaged(path)


def test_intact_archives_are_not_probed(tmp_path, monkeypatch):
    path = _damaged(tmp_path)
    path.unlink()
    with ArchiveWriter(path) as w:
        w.add(Entry(path=b"a", kind=EntryKind.FILE, size=1), b"1")
        for name in ("config", "training", "summary"):
            w.set_json(name, {})
        w.commit()
    monkeypatch.setattr(probe, "_command", lambda p: pytest.fail("probe ran on an intact archive"))
    with ArchiveReader(path, allow_damaged=True) as r:
        assert r.read_record(r.entries[0]) == b"1"
