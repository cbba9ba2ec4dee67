"""Compact columns and the version-3 index: round trips, and damage that must not be trusted."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.container.columns import Cursor, get_ints, get_names, put_ints, put_names, put_varint
from archiver.container.entries import Entry
from archiver.container.format import EntryKind
from archiver.container.index import Block, Index, decode_index, encode_index, psnr_code, psnr_value
from archiver.errors import CorruptArchiveError

_ints = st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40)


@settings(max_examples=200, deadline=None)
@given(values=_ints)
def test_ints_round_trip(values):
    data = put_ints(values)
    cur = Cursor(data, "t")
    np.testing.assert_array_equal(get_ints(cur, len(values)), np.asarray(values, dtype=np.int64))
    cur.done()


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.binary(max_size=20), max_size=30))
def test_names_round_trip(names):
    cur = Cursor(put_names(names), "t")
    assert get_names(cur, len(names)) == names
    cur.done()


def test_constant_and_delta_columns_are_small():
    assert len(put_ints([7] * 10_000)) == 9
    times = 10**18 + np.cumsum(np.full(1000, 17_000_000))
    assert len(put_ints(times)) < 4 * 1000 + 10  # deltas fit in 4 bytes, absolute times need 8


@pytest.mark.parametrize("cut", [1, 3, 8])
def test_truncated_column_is_an_error(cut):
    data = put_ints([1, 500, 70_000])
    with pytest.raises(CorruptArchiveError):
        get_ints(Cursor(data[:-cut], "t"), 3)


def test_varint_longer_than_ten_bytes_is_an_error():
    with pytest.raises(CorruptArchiveError, match="varint longer than 10 bytes"):
        Cursor(b"\xff" * 11, "t").varint()
    assert Cursor(put_varint(2**40), "t").varint() == 2**40


def test_psnr_codes():
    assert psnr_value(psnr_code(24.184)) == 24.18
    assert np.isnan(psnr_value(psnr_code(float("nan"))))
    assert psnr_value(psnr_code(float("inf"))) == float("inf")
    assert psnr_value(psnr_code(-3.0)) == 0.0


def _index() -> Index:
    entries = [Entry(path=b"a", kind=EntryKind.DIRECTORY), Entry(path=b"a/x", kind=EntryKind.FILE, size=3, note="n")]
    return Index(entries, [-1, 0], [Block(0, 5, 123)], {"config": {"a": 1}, "training": {}, "summary": {}})


def test_index_round_trip():
    back = decode_index(encode_index(_index()), 5)
    assert [(e.path, e.kind, e.size, e.note) for e in back.entries] == [
        (b"a", EntryKind.DIRECTORY, 0, ""), (b"a/x", EntryKind.FILE, 3, "n")
    ]  # fmt: skip
    assert back.blocks == [Block(0, 5, 123)] and back.documents["config"] == {"a": 1}
    assert (back.entries[1].offset, back.entries[1].length, back.entries[1].checksum) == (0, 5, 123)


def test_index_that_does_not_match_data_is_refused():
    with pytest.raises(CorruptArchiveError, match="block lengths or references do not match /data"):
        decode_index(encode_index(_index()), 6)


@pytest.mark.parametrize("where", [0, 1, 5, 30, -1])
def test_damaged_index_is_refused(where):
    raw = bytearray(encode_index(_index()))
    raw[where] ^= 0x5A
    with pytest.raises(CorruptArchiveError):
        decode_index(bytes(raw), 5)


def test_training_history_is_stored_by_column_and_read_back_by_check():
    from archiver.container.index import compact_training, expand_training

    training = {"steps": 1000, "history": [{"step": 500, "loss": 1.23456789, "converged": False},
                                           {"step": 1000, "loss": 0.5, "converged": True, "gan_started": True}]}  # fmt: skip
    stored = compact_training(training)
    assert stored["history"]["loss"] == [1.23457, 0.5] and stored["history"]["gan_started"] == [None, True]
    back = expand_training(stored)
    assert back["history"][1] == training["history"][1] and back["history"][0]["loss"] == 1.23457
    assert "gan_started" not in back["history"][0]
