import numpy as np
import pytest

from archiver.collection import pool
from archiver.collection.images import load_image
from archiver.collection.pool import POOL_TILE, PairPool, training_set
from archiver.errors import InputError
from conftest import write_images


def _sources(folder, count=6, w=300, h=200):
    write_images(folder, count, w, h)
    return [load_image(p)[0] for p in sorted(folder.iterdir())]


def test_small_collections_train_on_whole_images(tmp_path):
    sources = _sources(tmp_path / "s")
    arrays = training_set(sources, seed=0)
    assert len(arrays) == 6 and all(a.shape == (200, 300, 3) for a in arrays)


def test_large_collections_train_on_a_bounded_pool_of_tiles(tmp_path):
    sources = [s.release() for s in _sources(tmp_path / "s")]  # pixels not in memory: read again
    budget = 4 * POOL_TILE * POOL_TILE  # a tenth of the collection's 360,000 pixels
    a = training_set(sources, seed=0, budget=budget)
    b = training_set(sources, seed=0, budget=budget)
    assert 1 <= len(a) <= 8 and sum(t.shape[0] * t.shape[1] for t in a) <= 2 * budget
    assert all(t.shape == (200, 256, 3) for t in a)  # tile side capped by the image's height
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # seeded: the same pool every run
    full = [s.full().rgb for s in sources]
    assert all(any(np.array_equal(t, f[:, x : x + 256]) for f in full for x in range(45)) for t in a)


def test_pair_pool_cuts_the_same_place_in_both(tmp_path):
    rng = np.random.default_rng(0)
    recon = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    orig = recon ^ 1
    pairs = PairPool([300 * 400] * 3, seed=0, budget=2 * POOL_TILE * POOL_TILE)
    for _ in range(3):
        pairs.add(recon, orig)
    assert 1 <= len(pairs.pairs) <= 3 and not pairs.whole
    for r, o in pairs.pairs:
        assert r.shape == o.shape == (256, 256, 3) and np.array_equal(r ^ 1, o)


def test_released_image_reads_back_and_notices_changes(tmp_path):
    src = _sources(tmp_path / "s", count=1)[0]
    light = src.release()
    assert not light.resident and (light.height, light.width) == (200, 300) and light.blobs == {}
    assert np.array_equal(light.full().rgb, src.rgb)
    write_images(tmp_path / "other", 1, 300, 200, seed=9)
    (tmp_path / "other" / "0.png").replace(light.path)
    with pytest.raises(InputError, match=r"0\.png: changed while being packed; pack it again"):
        light.full()


def test_resident_budget_constant_is_bounded():
    assert pool.POOL_PIXELS * 3 <= pool.RESIDENT_BYTES  # training never needs more than stays resident
