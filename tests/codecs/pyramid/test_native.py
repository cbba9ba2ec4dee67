"""The compiled wavefront step (``native``) against the numpy path it replaces: the same latents from
the same bitstreams (groups of several sizes, several streams, networks whose activations reach the
clips), the same network outputs position for position, and built wherever a C compiler is."""

import os
import platform
import shutil
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codecs.pyramid import native
from archiver.codecs.pyramid.net import ACT_MAX, BUCKETS
from archiver.codecs.pyramid.plan import PyramidSpec

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import test_pyramid_coder  # noqa: E402  (its random network and grids)

needs_library = pytest.mark.skipif(native.LIBRARY is None, reason="the compiled wavefront step is not built here")


def test_built_where_a_compiler_is():
    """A silent build failure would leave every extract on the slower numpy path."""
    if os.environ.get("ARCHIVER_NUMPY_WAVEFRONT"):
        pytest.skip("ARCHIVER_NUMPY_WAVEFRONT is set")
    if platform.system() != "Linux" or not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler: the numpy path serves")
    assert native.LIBRARY is not None


def _decode_both(coder, streams):
    compiled = coder.decode_streams(streams)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(native, "LIBRARY", None)
        reference = coder.decode_streams(streams)
    return compiled, reference


@needs_library
@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([3, 8, 12, 16]), st.sampled_from([2, 4, 64]),
       st.floats(0.3, 40), st.floats(0.2, 3))  # fmt: skip
def test_same_latents_as_numpy(seed, hidden, tile, spread, weights):
    """Round trips of groups of two sizes decoded together, by both paths; ``weights`` up to 3
    (fixed point 768) with features up to ±1023 drive the first layer past ACT_MAX."""
    spec = PyramidSpec(channels=(1, 1, 1, 1), context_hidden=hidden, context="wavefront", context_tile=tile)
    rng = np.random.default_rng(seed)
    shapes = [(16, 24, 3), (8, 16, 2)]
    groups = [[test_pyramid_coder.random_grids(rng, h, w, spread, spec) for _ in range(n)] for h, w, n in shapes]
    net = test_pyramid_coder.random_net(seed, spec, weights)
    coder = test_pyramid_coder.fitted(net, [g for group in groups for g in group], spec)
    streams = [(coder.encode_many(group), h, w, n) for group, (h, w, n) in zip(groups, shapes)]
    compiled, reference = _decode_both(coder, streams)
    for group, got, ref in zip(groups, compiled, reference):
        for want_img, got_img, ref_img in zip(group, got, ref):
            for a, b, c in zip(want_img, got_img, ref_img):
                np.testing.assert_array_equal(b, a)
                np.testing.assert_array_equal(c, a)


def _kernel(net, level: int, own: np.ndarray, parent: np.ndarray | None, at: np.ndarray, parent_at: np.ndarray,
            inside: np.ndarray, width: int, key_base: np.ndarray):  # fmt: skip
    """``wave_features_net`` on one image of ``len(at)`` positions: (mean, bucket, key)."""
    coder = type("C", (), {"net": net})()
    weights, hidden = native._level_net(coder, level)
    own_off = np.array([-1, -width - 1, -width, -width + 1], dtype=np.int64)
    parent_off = np.array([0, -width, width, -1, 1], dtype=np.int64)  # the test's parent grid has own's width
    n = len(at)
    mean, bucket, key = np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.uint16)
    inside = np.ascontiguousarray(inside, dtype=np.bool_)
    native.LIBRARY.wave_features_net(
        1, n, at.ctypes.data, parent_at.ctypes.data, 0, 0, inside.ctypes.data, n, own.ctypes.data,
        None if parent is None else parent.ctypes.data, own_off.ctypes.data, parent_off.ctypes.data,
        weights.ctypes.data, hidden, key_base.ctypes.data, mean.ctypes.data, bucket.ctypes.data, key.ctypes.data,
    )  # fmt: skip
    return mean, bucket, key


@needs_library
@pytest.mark.parametrize("weights", [0.05, 1.0, 200.0, 4000.0])
@pytest.mark.parametrize("hidden", [1, 4, 12, 64])
def test_network_outputs_equal_contextnet_run(weights, hidden):
    """Position by position, the compiled network gives ContextNet.run's mean and bucket, from
    networks whose outputs stay small to ones whose every layer saturates (ACT_MAX, the mean's
    ±SYMBOL_CLIP, the first and last bucket), with and without a parent level."""
    spec = PyramidSpec(channels=(1, 1, 1), context_hidden=hidden, context="wavefront", context_tile=64)
    rng = np.random.default_rng(hidden)
    net = test_pyramid_coder.random_net(hidden, spec, weights)
    width, n = 40, 700
    own = rng.integers(-1023, 1024, width * width).astype(np.int16)
    parent = rng.integers(-1023, 1024, width * width).astype(np.int16)
    at = rng.integers(width + 1, width * width - width - 1, n).astype(np.int64)
    parent_at = rng.integers(width + 1, width * width - width - 1, n).astype(np.int64)
    inside = rng.random((4, n)) < 0.8
    key_base = np.array([3 * BUCKETS], dtype=np.int64)
    for level in range(spec.levels):
        for par in (parent, None):
            mean, bucket, key = _kernel(net, level, own, par, at, parent_at, inside, width, key_base)
            feats = np.zeros((9, n), np.int64)
            if par is not None:
                for f, off in enumerate((0, -width, width, -1, 1)):
                    feats[f] = par[parent_at + off]
            for c, off in enumerate((-1, -width - 1, -width, -width + 1)):
                feats[5 + c] = np.where(inside[c], own[at + off], 0)
            want_mean, want_bucket = net.run(0, level, feats)
            np.testing.assert_array_equal(mean, want_mean)
            np.testing.assert_array_equal(bucket, want_bucket)
            np.testing.assert_array_equal(key, want_bucket + 3 * BUCKETS)
    if weights >= 200:  # the saturating networks do saturate
        assert net.layers[0][0][0].max() * 1023 > ACT_MAX
        assert {int(want_bucket.min()), int(want_bucket.max())} & {0, BUCKETS - 1}


@needs_library
@pytest.mark.parametrize("weights", [0.05, 1.0, 200.0, 4000.0])
def test_both_network_builds_equal_contextnet_run(weights):
    """The network as this CPU runs it and the 2-wide build every CPU can run (SSE2, NEON) give
    ContextNet.run's outputs, whichever of them the machine testing would use."""
    spec = PyramidSpec(channels=(1, 1, 1), context_hidden=12, context="wavefront", context_tile=64)
    net = test_pyramid_coder.random_net(7, spec, weights)
    coder = type("C", (), {"net": net})()
    rng = np.random.default_rng(7)
    x = rng.integers(-1023, 1024, (9, 64)).astype(np.float64)
    for level in range(spec.levels):
        weights_, hidden = native._level_net(coder, level)
        want_mean, want_bucket = net.run(0, level, x)
        for base in (0, 1):
            mean, bucket = np.empty(64, np.int64), np.empty(64, np.int64)
            assert native.LIBRARY.wave_run_net(base, x.ctypes.data, weights_.ctypes.data, hidden,
                                               mean.ctypes.data, bucket.ctypes.data) == 64  # fmt: skip
            np.testing.assert_array_equal(mean, want_mean)
            np.testing.assert_array_equal(bucket, want_bucket)


@needs_library
def test_sort_is_stable_by_key():
    rng = np.random.default_rng(3)
    n, nkeys = 5000, 7 * BUCKETS
    key = rng.integers(0, nkeys, n).astype(np.uint16)
    counts, order = np.empty(nkeys, np.int64), np.empty(n, np.int64)
    run_key, run_start, run_stop = (np.empty(nkeys, np.int64) for _ in range(3))
    runs = native.LIBRARY.wave_sort(n, key.ctypes.data, nkeys, counts.ctypes.data, order.ctypes.data,
                                    run_key.ctypes.data, run_start.ctypes.data, run_stop.ctypes.data)  # fmt: skip
    want = np.argsort(key, kind="stable")
    np.testing.assert_array_equal(order, want)
    used = np.unique(key)
    np.testing.assert_array_equal(run_key[:runs], used)
    for k, a, b in zip(run_key[:runs], run_start[:runs], run_stop[:runs]):
        assert (key[want[a:b]] == k).all() and b - a == (key == k).sum()
