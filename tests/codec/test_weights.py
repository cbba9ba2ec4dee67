import numpy as np
import pytest

from archiver.codec.weights import pack_arrays, unpack_arrays
from archiver.errors import CorruptArchiveError


def test_round_trip(rng):
    arrays = {
        "a.q": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
        "a.scale": rng.random(4).astype(np.float32),
        "b": rng.standard_normal(7).astype(np.float32),
    }
    blob, manifest = pack_arrays(arrays)
    back = unpack_arrays(blob, manifest)
    assert list(back) == list(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype


def test_size_mismatch_detected(rng):
    blob, manifest = pack_arrays({"a": rng.random(10).astype(np.float32)})
    manifest[0]["shape"] = [11]
    with pytest.raises(CorruptArchiveError, match="manifest says 44"):
        unpack_arrays(blob, manifest)


def test_disallowed_dtype():
    with pytest.raises(ValueError, match="dtype float64"):
        pack_arrays({"a": np.zeros(3)})
