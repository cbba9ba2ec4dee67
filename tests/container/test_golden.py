"""Archives written by earlier versions must keep opening and decoding to the same pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from archiver.extract import extract
from archiver.inspect import list_entries, verify

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ARCHIVES = sorted(GOLDEN.glob("v*-mixed.nca"))


def test_there_is_a_golden_archive():
    assert ARCHIVES, "tests/golden/ must hold at least the current version's archive"


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_golden_lists_as_recorded(archive):
    expected = json.loads(archive.with_suffix(".json").read_text())
    assert list_entries(archive) == expected


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_golden_decodes_bit_exactly(archive):
    report = verify(archive, decode=True)
    assert report.ok, report.problems
    assert report.decoded == sum(row["kind"] == "image" for row in json.loads(archive.with_suffix(".json").read_text()))


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_golden_extracts(archive, tmp_path):
    extract(archive, tmp_path)
    assert (tmp_path / "sub" / "readme.txt").read_bytes() == b"golden archive, format version 1\n"
    assert Image.open(tmp_path / "rgb.png").size == (37, 29)
    assert Image.open(tmp_path / "sub" / "gray.png").mode == "L"
    assert (tmp_path / "empty").is_dir()


def test_v3_golden_groups_images_and_shares_metadata(tmp_path):
    """Version 3: the two ICC images are one group and their profile one shared blob, extracted twice."""
    from archiver.container.reader import ArchiveReader

    archive = GOLDEN / "v3-mixed.nca"
    with ArchiveReader(archive) as r:
        a, b = (next(e for e in r.entries if e.name == f"sub/icc_{k}.png") for k in "ab")
        assert a.block == b.block and b.member == a.member + 1  # one shape, one group, entry order
        groups = [blk for blk in r.blocks if blk.is_group]
        assert len(groups) < sum(e.kind.name == "IMAGE" for e in r.entries)  # some images share a group
        icc = r.read_image(a)[1].blobs["icc"]
        assert icc == r.read_image(b)[1].blobs["icc"]
    extract(archive, tmp_path)
    for k in "ab":
        assert Image.open(tmp_path / "sub" / f"icc_{k}.png").info.get("icc_profile") == icc


@pytest.mark.parametrize("name", ["v3-mixed.nca", "v3-pyramid-wavefront-delta-graph-mixed.nca"])
def test_v3_damaged_group_is_salvaged_by_name(tmp_path, name):
    """extract --keep-going on a damaged image group: each of its images is named, the rest comes out
    (also where the groups are entropy-decoded together: the wavefront pyramid codec)."""
    from archiver.container.reader import ArchiveReader

    archive = GOLDEN / name
    with ArchiveReader(archive) as r:
        entry = next(e for e in r.entries if e.name == "sub/icc_a.png")
        members = {e.display for e in r.group_members(entry)}
        where = r.data_offset() + r.blocks[entry.block].offset + 1
    raw = bytearray(archive.read_bytes())
    raw[where] ^= 0x20
    damaged = tmp_path / "d.nca"
    damaged.write_bytes(bytes(raw))
    report = extract(damaged, tmp_path / "out", keep_going=True)
    assert {name for name, _ in report.failed} == members
    assert all("checksum mismatch in entry" in why and "image group" in why for _, why in report.failed)
    assert (tmp_path / "out" / "sub" / "readme.txt").read_bytes() == b"golden archive, format version 1\n"
    assert report.images == 4 - len(members)


def test_groups_decoded_together_equal_groups_decoded_alone():
    """The wavefront coder decodes an archive's groups (of different sizes) in one pass: the same
    latents and records as one group at a time."""
    import numpy as np

    from archiver.container.reader import ArchiveReader

    archive = GOLDEN / "v3-pyramid-wavefront-delta-graph-mixed.nca"
    with ArchiveReader(archive) as r:
        images = [e for e in r.entries if e.kind.name == "IMAGE"]
        assert len({e.block for e in images}) > 1 and hasattr(r.codec.coder(), "decode_streams")
        together = r.read_images(images)
    for entry, (latent, record) in zip(images, together):
        with ArchiveReader(archive) as r:  # a fresh reader: nothing cached
            alone, alone_record = r.read_image(entry)
        np.testing.assert_array_equal(latent, alone)
        assert record == alone_record
