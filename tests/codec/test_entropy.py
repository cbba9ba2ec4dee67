import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from archiver.codec.entropy import LatentCoder
from archiver.codec.tables import PRECISION, build_tables
from archiver.errors import CorruptArchiveError


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda c: st.lists(
            hnp.arrays(np.int32, st.tuples(st.just(c), st.integers(1, 5), st.integers(1, 5)),
                       elements=st.integers(-40, 40)),
            min_size=1, max_size=4,
        )
    )
)  # fmt: skip
def test_round_trip(latents):
    tables = build_tables(latents)
    tables.validate()
    coder = LatentCoder(tables)
    for latent in latents:
        data = coder.encode(latent)
        assert len(data) % 4 == 0
        np.testing.assert_array_equal(coder.decode(data, latent.shape[1], latent.shape[2]), latent)


def test_tables_sum_to_precision(rng):
    latents = [np.round(rng.laplace(0, 2, (4, 8, 8))).astype(np.int32) for _ in range(3)]
    tables = build_tables(latents)
    for c in range(4):
        assert tables.freqs[c, : tables.lengths[c]].sum() == 1 << PRECISION


def test_constant_channel_costs_nothing():
    latent = np.zeros((2, 16, 16), np.int32)
    latent[1] = np.arange(256).reshape(16, 16) % 3
    coder = LatentCoder(build_tables([latent]))
    only_varying = LatentCoder(build_tables([latent[1:]]))
    assert len(coder.encode(latent)) == len(only_varying.encode(latent[1:]))


def test_skewed_data_codes_near_entropy(rng):
    latent = (rng.random((1, 64, 64)) < 0.1).astype(np.int32)
    data = LatentCoder(build_tables([latent])).encode(latent)
    p = latent.mean()
    entropy_bits = -(p * np.log2(p) + (1 - p) * np.log2(1 - p)) * latent.size
    assert len(data) * 8 < entropy_bits * 1.05 + 64


def test_out_of_table_value_rejected():
    coder = LatentCoder(build_tables([np.zeros((1, 2, 2), np.int32) + np.array([[0, 1], [1, 0]])]))
    with pytest.raises(ValueError, match="outside its table"):
        coder.encode(np.full((1, 2, 2), 5, np.int32))


def test_bad_bitstream_length():
    coder = LatentCoder(build_tables([np.arange(4, dtype=np.int32).reshape(1, 2, 2)]))
    with pytest.raises(CorruptArchiveError, match="not whole 32-bit words"):
        coder.decode(b"abc", 2, 2)
