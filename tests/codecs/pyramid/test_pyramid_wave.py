"""Pyramid coder, wavefront context order (codec version 4): group round trips, features equal to the
torch training proxy's, causal decoding order, same latents in another process and under threads,
hostile bitstreams end in CorruptArchiveError."""

import contextlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codecs.pyramid.coder import ContextNet, PyramidCoder
from archiver.codecs.pyramid.plan import PyramidSpec, context_features_count
from archiver.codecs.pyramid.net import padded
from archiver.codecs.pyramid.wave import WavePlan, level_residuals, step_features
from archiver.errors import CorruptArchiveError

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import test_pyramid_coder  # noqa: E402  (its random network, for either context order)

SPEC = PyramidSpec(channels=(1, 1, 1, 1), context_hidden=8, context="wavefront", context_tile=4)


def random_net(seed: int, spec: PyramidSpec = SPEC) -> ContextNet:
    return test_pyramid_coder.random_net(seed, spec)


def random_grids(rng, h, w, spread=3.0, spec=SPEC):
    return test_pyramid_coder.random_grids(rng, h, w, spread, spec)


def fitted(net, images, spec=SPEC) -> PyramidCoder:
    return test_pyramid_coder.fitted(net, images, spec)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3), st.floats(0.2, 60))
def test_group_round_trip(seed, hb, wb, count, spread):
    rng = np.random.default_rng(seed)
    h, w = hb * SPEC.stride, wb * SPEC.stride
    images = [random_grids(rng, h, w, spread) for _ in range(count)]
    coder = fitted(random_net(seed), images)
    out = coder.decode_many(coder.encode_many(images), h, w, count)
    for got, want in zip(out, images):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_plan_steps_are_causal_and_tiles_independent():
    """Every causal neighbour a position reads (inside its tile) is decoded at an earlier step; the
    number of steps is bounded by the tile, not the grid; within a step, raster order."""
    h, w = 13, 11
    plan = WavePlan(h, w, 4)
    rows, cols = np.divmod(plan.raster, w)
    step = np.full((h, w), -1, np.int64)
    for t in range(plan.steps):
        sl = slice(plan.bounds[t], plan.bounds[t + 1])
        step[rows[sl], cols[sl]] = t
        assert (np.diff(plan.raster[sl]) > 0).all()
    assert plan.steps <= 3 * 4 - 2 and (step >= 0).all()
    np.testing.assert_array_equal(np.sort(plan.raster), np.arange(h * w))
    np.testing.assert_array_equal(plan.own, (rows + 1) * (w + 2) + cols + 1)
    np.testing.assert_array_equal(plan.parent, (rows // 2 + 1) * (w // 2 + 2) + cols // 2 + 1)
    for k, (dy, dx) in enumerate(((0, -1), (-1, -1), (-1, 0), (-1, 1))):
        m = plan.inside[k]
        r, c = rows[m], cols[m]
        assert (step[r + dy, c + dx] < step[r, c]).all()
        assert ((r + dy) // 4 == r // 4).all() and ((c + dx) // 4 == c // 4).all()
    # every in-tile, in-grid neighbour is read (nothing usable is left out)
    np.testing.assert_array_equal(plan.inside[2], rows % 4 > 0)
    np.testing.assert_array_equal(plan.inside[3], (rows % 4 > 0) & (cols % 4 < 3) & (cols + 1 < w))


def test_streams_decode_as_alone():
    """Groups of different sizes decoded side by side give what each gives alone; a damaged stream
    among them changes nothing of the others (or ends in CorruptArchiveError)."""
    rng = np.random.default_rng(8)
    shapes = [(16, 24, 3), (32, 16, 1), (8, 8, 2), (16, 24, 1)]
    groups = [[random_grids(rng, h, w) for _ in range(n)] for h, w, n in shapes]
    coder = fitted(random_net(8), [g for group in groups for g in group])
    streams = [(coder.encode_many(group), h, w, n) for group, (h, w, n) in zip(groups, shapes)]
    together = coder.decode_streams(streams)
    for group, got, (data, h, w, n) in zip(groups, together, streams):
        alone = coder.decode_many(data, h, w, n)
        for want_img, got_img, alone_img in zip(group, got, alone):
            for a, b, c in zip(want_img, got_img, alone_img):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(a, c)
    for bad in test_pyramid_coder.hostile_copies(rng, streams[1][0], 10):
        try:
            damaged = coder.decode_streams([streams[0], (bad, *streams[1][1:]), *streams[2:]])
        except CorruptArchiveError:
            continue
        for s in (0, 2, 3):
            for got_img, want_img in zip(damaged[s], together[s]):
                for a, b in zip(got_img, want_img):
                    np.testing.assert_array_equal(a, b)


def test_features_equal_the_training_proxy():
    """The integer coder's features are the torch context model's, position for position."""
    torch = pytest.importorskip("torch")
    from archiver.codecs.pyramid.model import ContextModel

    rng = np.random.default_rng(2)
    grids = random_grids(rng, 24, 16, 40.0)
    model = ContextModel(SPEC)
    tgrids = [torch.from_numpy(g.astype(np.float32))[None, None] for g in grids]
    coder = PyramidCoder(SPEC, random_net(0))
    for level, plan, _residual, _bucket in level_residuals(coder, [grids]):
        want = model.features(tgrids, level, 0)[0, : 9].numpy()
        parent = padded(grids[level + 1]).ravel() if level + 1 < SPEC.levels else None
        got = step_features(plan, 1, parent, padded(grids[level]).ravel(), slice(0, plan.bounds[-1]))
        rows, cols = np.divmod(plan.raster, plan.w)
        np.testing.assert_array_equal(got, want[:, rows, cols])


def test_left_neighbour_context_saves_bits_on_smooth_grids():
    """A net that predicts each value from its left neighbour codes smooth grids in fewer bytes than
    a constant prediction."""
    rng = np.random.default_rng(3)
    base = np.cumsum(np.cumsum(rng.normal(0, 1, (64, 64)), 0), 1)
    grids = [np.round(base[:: 1 << l, :: 1 << l] / 4).astype(np.int32) for l in range(SPEC.levels)]
    cin, hid = context_features_count(SPEC, 0), SPEC.context_hidden

    def net(use_left: bool) -> ContextNet:
        w1 = np.zeros((hid, cin))
        if use_left:  # ReLU pair carries ±left through the hidden layers
            w1[0, 5], w1[1, 5] = 1, -1
        w3 = np.zeros((2, hid))
        w3[0, 0], w3[0, 1] = 1, -1
        return ContextNet.from_float([[(w1, np.zeros(hid)), (np.eye(hid), np.zeros(hid)), (w3, np.array([0.0, 1.0]))]])

    sizes = [len(fitted(net(u), [grids]).encode(grids)) for u in (False, True)]
    assert sizes[1] < 0.8 * sizes[0]


def test_hostile_bitstreams_fail_cleanly():
    rng = np.random.default_rng(5)
    images = [random_grids(rng, 32, 32) for _ in range(2)]
    coder = fitted(random_net(5), images)
    data = coder.encode_many(images)
    for bad in test_pyramid_coder.hostile_copies(rng, data):
        with contextlib.suppress(CorruptArchiveError):
            coder.decode_many(bad, 32, 32, 2)  # may decode to other values: never hang or crash
    with pytest.raises(CorruptArchiveError):
        coder.decode_many(bytes(data[:-1]), 32, 32, 2)
    with pytest.raises(CorruptArchiveError):  # the checkerboard's two networks do not fit this spec
        PyramidCoder(SPEC, ContextNet.from_float([random_net(1).layers[0]] * 2))


def _decode_digest(seed: int) -> str:
    import hashlib

    rng = np.random.default_rng(seed)
    images = [random_grids(rng, 64, 48) for _ in range(3)]
    coder = fitted(random_net(seed), images)
    out = coder.decode_many(coder.encode_many(images), 64, 48, 3)
    return hashlib.sha256(b"".join(g.tobytes() for grids in out for g in grids)).hexdigest()


def test_same_latents_in_threads_and_another_process():
    expected = _decode_digest(11)
    with ThreadPoolExecutor(2) as pool:
        assert set(pool.map(_decode_digest, [11, 11, 11])) == {expected}
    code = "import sys; sys.path.insert(0, sys.argv[1]); from test_pyramid_wave import _decode_digest; print(_decode_digest(11))"
    here = str(__import__("pathlib").Path(__file__).parent)
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, here], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected
