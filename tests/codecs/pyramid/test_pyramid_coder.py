"""Pyramid coder: exact round trips, integer-only context network, same latents in another process
and under threads, hostile bitstreams end in CorruptArchiveError."""

import contextlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codecs.pyramid.coder import (
    BUCKETS,
    ContextNet,
    HistogramCounter,
    PyramidCoder,
    ResidualTables,
)
from archiver.codecs.pyramid.plan import PyramidSpec, context_features_count
from archiver.errors import CorruptArchiveError

SPEC = PyramidSpec(channels=(1, 1, 1, 1), context_hidden=8)


def random_net(seed: int, spec: PyramidSpec = SPEC, spread: float = 0.5) -> ContextNet:
    rng = np.random.default_rng(seed)
    phases = []
    for phase in range(spec.phases):
        cin, layers = context_features_count(spec, phase), []
        for cout in (spec.context_hidden, spec.context_hidden, 2):
            layers.append((rng.normal(0, spread, (cout, cin)), rng.normal(0, spread, cout)))
            cin = cout
        phases.append(layers)
    return ContextNet.from_float(phases)


def random_grids(rng: np.random.Generator, h: int, w: int, spread: float = 3.0, spec: PyramidSpec = SPEC):
    return [np.round(rng.laplace(0, spread / (1 + l), (h >> l, w >> l))).astype(np.int32) for l in range(spec.levels)]


def fitted(net: ContextNet, images: list, spec: PyramidSpec = SPEC) -> PyramidCoder:
    counter = HistogramCounter()
    coder = PyramidCoder(spec, net)
    for grids in images:
        coder.count(grids, counter)
    return PyramidCoder(spec, net, counter.tables())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 4), st.integers(1, 4), st.floats(0.2, 30))
def test_round_trip(seed, hb, wb, spread):
    rng = np.random.default_rng(seed)
    h, w = hb * SPEC.stride, wb * SPEC.stride
    images = [random_grids(rng, h, w, spread) for _ in range(2)]
    coder = fitted(random_net(seed), images)
    for grids in images:
        out = coder.decode(coder.encode(grids), h, w)
        for a, b in zip(out, grids):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spread,dtype", [(0.5, np.float64), (0.5, np.int16), (5000.0, np.int16)])
def test_network_is_integer_and_exact(spread, dtype):
    """The float64 computation equals integer arithmetic, also with weights at the largest
    magnitudes the format allows (activations then hit ACT_MAX) and int16 features (the wavefront
    decoder's)."""
    net = random_net(1, spread=spread)
    rng = np.random.default_rng(0)
    level = 2
    x = rng.integers(-1023, 1024, (500, context_features_count(SPEC, 1) - SPEC.levels))
    mean, bucket = net.run(1, level, np.ascontiguousarray(x.T.astype(dtype)))
    for _ in range(2):  # again, with the reused work arrays, and the same answer
        again = net.run(1, level, np.ascontiguousarray(x.T.astype(dtype)))
        assert np.array_equal(again[0], mean) and np.array_equal(again[1], bucket)
    # The same arithmetic in Python integers (arbitrary precision) gives the same answer, with the
    # level's one-hot as inputs.
    onehot = np.zeros((500, SPEC.levels), np.int64)
    onehot[:, level] = 1
    full = np.concatenate([x.astype(np.int64), onehot], 1)
    (w1, b1), (w2, b2), (w3, b3) = net.layers[1]
    extremes = 0
    for row, m, k in zip(full[:50], mean[:50], bucket[:50]):
        h = [min(max(int(np.dot(w1[o].astype(np.int64), row)) + int(b1[o]), 0), (1 << 24) - 1) for o in range(len(b1))]
        extremes += h.count((1 << 24) - 1)
        h = [min(max((int(np.dot(w2[o].astype(np.int64), h)) + int(b2[o]) * 256) // 256, 0), (1 << 24) - 1) for o in range(len(b2))]
        o = [(int(np.dot(w3[i].astype(np.int64), h)) + int(b3[i]) * 256) // 256 for i in range(2)]
        assert m == min(max((o[0] + 128) // 256, -4095), 4095)
        assert k == min(max((o[1] + 3 * 256) // 64, 0), BUCKETS - 1)
    assert (extremes > 0) == (spread > 1)  # the large weights reach the activations' clip


def test_context_saves_bits_on_smooth_grids():
    """A net that predicts the mean from the parent codes smooth pyramids in fewer bytes than a
    constant prediction."""
    rng = np.random.default_rng(3)
    base = np.cumsum(np.cumsum(rng.normal(0, 1, (64, 64)), 0), 1)
    grids = [np.round(base[:: 1 << l, :: 1 << l] / 4).astype(np.int32) for l in range(SPEC.levels)]
    cin0, cin1, hid = context_features_count(SPEC, 0), context_features_count(SPEC, 1), SPEC.context_hidden

    def net(use_parent: bool) -> ContextNet:
        phases = []
        for cin in (cin0, cin1):
            w1 = np.zeros((hid, cin))
            if use_parent:  # ReLU pair carries ±parent through the hidden layers
                w1[0, 0], w1[1, 0] = 1, -1
            w2 = np.eye(hid)
            w3 = np.zeros((2, hid))
            w3[0, 0], w3[0, 1] = 1, -1
            phases.append([(w1, np.zeros(hid)), (w2, np.zeros(hid)), (w3, np.array([0.0, 1.0]))])
        return ContextNet.from_float(phases)

    sizes = [len(fitted(net(p), [grids]).encode(grids)) for p in (False, True)]
    assert sizes[1] < 0.8 * sizes[0]


def hostile_copies(rng: np.random.Generator, data: bytes, trials: int = 40):
    """Copies of ``data`` with 1 to 4 random bits flipped (trial by trial)."""
    for trial in range(trials):
        bad = bytearray(data)
        for _ in range(1 + trial % 4):
            bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        yield bytes(bad)


def test_hostile_bitstreams_fail_cleanly():
    rng = np.random.default_rng(5)
    grids = random_grids(rng, 32, 32)
    coder = fitted(random_net(5), [grids])
    data = coder.encode(grids)
    for bad in hostile_copies(rng, data):
        with contextlib.suppress(CorruptArchiveError):
            coder.decode(bad, 32, 32)  # may decode to other values: never hang or crash
    with pytest.raises(CorruptArchiveError):
        coder.decode(bytes(data[:-1]), 32, 32)


def test_tables_refuse_impossible_values():
    with pytest.raises(CorruptArchiveError):
        ResidualTables.from_stored(np.zeros(BUCKETS), np.full(BUCKETS, 5), np.zeros((BUCKETS, 3), np.uint8))
    with pytest.raises(CorruptArchiveError):
        ResidualTables.from_stored(np.zeros(3), np.zeros(3), np.zeros((3, 3), np.uint8))
    bad = random_net(0).to_arrays()
    bad["p0.l0.w"] = bad["p0.l0.w"][:, :-1]
    with pytest.raises(CorruptArchiveError):
        PyramidCoder(SPEC, ContextNet.from_arrays(bad))


def test_unused_table_in_stream_is_an_error():
    rng = np.random.default_rng(9)
    grids = random_grids(rng, 16, 16)
    coder = fitted(random_net(9), [grids])
    t = coder.tables
    used = np.flatnonzero(t.lengths)
    lengths = t.lengths.copy()
    lengths[used[0]] = 0
    broken = PyramidCoder(SPEC, coder.net, ResidualTables.from_stored(t.lows, lengths, t.counts_q))
    with pytest.raises(CorruptArchiveError):
        broken.decode(coder.encode(grids), 16, 16)


def _decode_digest(seed: int) -> str:
    import hashlib

    rng = np.random.default_rng(seed)
    grids = random_grids(rng, 64, 48)
    coder = fitted(random_net(seed), [grids])
    out = coder.decode(coder.encode(grids), 64, 48)
    return hashlib.sha256(b"".join(g.tobytes() for g in out)).hexdigest()


def test_same_latents_in_threads_and_another_process():
    expected = _decode_digest(11)
    with ThreadPoolExecutor(2) as pool:
        assert set(pool.map(_decode_digest, [11, 11, 11])) == {expected}
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_pyramid_coder import _decode_digest; print(_decode_digest(11))"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, here], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.3, 20), st.sampled_from(["checkerboard", "wavefront"]))
def test_ideal_bits_predict_the_coded_length(seed, spread, order):
    """``--max-bytes`` fits on ideal code lengths: the range coder's output is within a few bytes
    (both context orders; the wavefront codes the three images interleaved)."""
    from dataclasses import replace

    spec = replace(SPEC, context=order, context_tile=8)
    rng = np.random.default_rng(seed)
    images = [random_grids(rng, 32, 24, spread) for _ in range(3)]
    counter, coder = HistogramCounter(), PyramidCoder(spec, random_net(seed % 1000, spec))
    for grids in images:
        coder.count(grids, counter)
    tables = counter.tables()
    predicted = counter.ideal_bits(tables) / 8
    actual = len(PyramidCoder(spec, coder.net, tables).encode_many(images))
    assert predicted <= actual + 1
    assert actual <= predicted * 1.01 + 16


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 3), st.floats(0.5, 200))
def test_anchors_share_their_parents_network_run(seed, hb, wb, spread):
    """Phase 0 runs the network once per parent (the decoding shortcut): the same (mean, bucket) as
    one run per anchor, at every level, including large values that reach the clips."""
    from archiver.codecs.pyramid.coder import _phase_positions, phase_features

    rng = np.random.default_rng(seed)
    h, w = hb * SPEC.stride, wb * SPEC.stride
    grids = random_grids(rng, h, w, spread)
    coder = PyramidCoder(SPEC, random_net(seed))
    for level in range(SPEC.levels - 1):
        rows, cols = _phase_positions(h >> level, w >> level, 0)
        fast = coder._params(grids, level, 0, rows, cols)
        plain = coder.net.run(0, level, phase_features(SPEC, grids, level, 0, rows, cols))
        for a, b in zip(fast, plain):
            np.testing.assert_array_equal(a, b)


def test_phase_positions_are_the_checkerboard_in_raster_order():
    from archiver.codecs.pyramid.coder import _phase_positions, anchor_mask

    for h in (1, 2, 3, 8):
        for w in (1, 2, 5, 6):
            for phase in (0, 1):
                rows, cols = _phase_positions(h, w, phase)
                want = np.nonzero(anchor_mask(h, w) == (phase == 0))
                np.testing.assert_array_equal(rows, want[0])
                np.testing.assert_array_equal(cols, want[1])
