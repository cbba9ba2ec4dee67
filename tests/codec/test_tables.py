import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codec.entropy import LatentCoder
from archiver.codec.spool import LatentSpool
from archiver.codec.tables import TableCounter, build_tables


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), spread=st.integers(0, 40))
def test_counting_one_image_at_a_time_equals_counting_all(seed, n, spread):
    """The streaming counter gives the tables of all latents at once (here: side by side in one)."""
    rng = np.random.default_rng(seed)
    latents = [rng.integers(-spread - i, spread + 2 * i + 1, (3, 2, 4)).astype(np.int32) for i in range(n)]
    counter = TableCounter()
    for y in latents:
        counter.add(y)
    streamed = counter.tables()
    together = build_tables([np.concatenate(latents, axis=2)])
    for name in ("offsets", "lengths", "freqs"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(together, name))


def test_spool_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    latents = {k: rng.integers(-4, 5, (2, 3, 3)).astype(np.int32) for k in (5, 2, 9)}
    spool = LatentSpool(tmp_path / "spool")
    for k, y in latents.items():
        spool.put(k, y)
    coder = LatentCoder(build_tables(list(latents.values())))
    spool.encode_all(coder)
    assert list(spool) == [5, 2, 9] and len(spool) == 3
    for k, y in latents.items():
        np.testing.assert_array_equal(coder.decode(spool[k], 3, 3), y)
        assert spool.lengths[k] == len(spool[k])
    spool.close()
    assert not (tmp_path / "spool").exists()
