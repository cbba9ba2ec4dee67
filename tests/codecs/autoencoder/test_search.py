import numpy as np
import pytest
import torch

from archiver.codec.tables import build_tables
from archiver.codecs.autoencoder.search import TableRate


def test_table_rate_is_the_tables_bits_at_integers():
    rng = np.random.default_rng(0)
    latents = [rng.integers(-3, 5, (2, 4, 4)).astype(np.int32)]
    latents[0][1] = 7  # a constant channel: costs nothing
    tables = build_tables(latents)
    rate = TableRate(tables)
    y = torch.from_numpy(latents[0].astype(np.float32))[None]
    want = 0.0
    for c in range(2):
        p = tables.probabilities(c)
        want += float(-np.log2(p[latents[0][c] - tables.offsets[c]]).sum())
    assert rate(y).item() == pytest.approx(want, rel=1e-5)
    # between two integers the bits are interpolated, so the search has a slope to follow
    mid = y.clone()
    mid[0, 0, 0, 0] += 0.5
    k = int(latents[0][0, 0, 0] - tables.offsets[0])
    bits = -np.log2(tables.probabilities(0))
    step = 0.5 * (bits[min(k + 1, len(bits) - 1)] - bits[k])
    assert rate(mid).item() == pytest.approx(rate(y).item() + step, rel=1e-5)
    # clamping keeps every symbol inside its channel's table: always codable with the same tables
    wild = torch.full_like(y, 100.0)
    clamped = rate.clamp(wild)
    assert clamped[0, 0].max().item() == tables.offsets[0] + tables.lengths[0] - 1
    assert clamped[0, 1].max().item() == 7
