"""The one tile-and-halo loop: tiles cover the grid once, windows hold their centre and the halo."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from archiver.codec.geometry import tiles


@given(st.integers(1, 90), st.integers(1, 90), st.integers(1, 40), st.integers(0, 12))
def test_tiles_cover_once_with_their_halo(height, width, tile, halo):
    seen = np.zeros((height, width), dtype=int)
    for t in tiles(height, width, tile, halo):
        seen[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert 0 <= t.ya <= t.y0 < t.y1 <= t.yb <= height and 0 <= t.xa <= t.x0 < t.x1 <= t.xb <= width
        assert t.y0 - t.ya == min(halo, t.y0) and t.yb - t.y1 == min(halo, height - t.y1)
        assert t.x0 - t.xa == min(halo, t.x0) and t.xb - t.x1 == min(halo, width - t.x1)
        assert t.y1 - t.y0 <= tile and t.x1 - t.x0 <= tile
    assert (seen == 1).all()
