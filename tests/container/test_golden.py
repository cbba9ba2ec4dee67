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
