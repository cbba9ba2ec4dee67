import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.container.records import ImageRecord, decode_image_record, encode_image_record
from archiver.errors import CorruptArchiveError

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(
    latent=st.binary(max_size=200),
    info=st.dictionaries(st.text(min_size=1, max_size=8), _json, max_size=3),
    blobs=st.dictionaries(st.sampled_from(["alpha", "exif", "icc", "xmp", "palette"]), st.binary(max_size=100)),
)
def test_round_trip(latent, info, blobs):
    back = decode_image_record(encode_image_record(ImageRecord(latent, info, blobs)))
    assert back.latent == latent and back.info == info and back.blobs == blobs


def test_no_extras_costs_eight_bytes():
    assert len(encode_image_record(ImageRecord(b"1234"))) == 12


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_truncated(cut):
    data = encode_image_record(ImageRecord(b"12345678", {"a": 1}, {"exif": b"xyz"}))
    with pytest.raises(CorruptArchiveError):
        decode_image_record(data[:-cut])
