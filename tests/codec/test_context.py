"""Context tables: exact round trips for every (S, K), integer-only rebuilding, and a real saving."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from archiver.codec.context import (
    CANDIDATES,
    ContextTables,
    dequantize_counts,
    fit_context_tables,
    normalize_counts,
    quantize_counts,
    spatial_activity,
    anchor_mask,
)
from archiver.codec.entropy import LatentCoder
from archiver.codec.tables import PRECISION, build_tables

LATENTS = st.integers(1, 5).flatmap(
    lambda c: st.lists(
        hnp.arrays(np.int32, st.tuples(st.just(c), st.integers(1, 7), st.integers(1, 7)), elements=st.integers(-30, 30)),
        min_size=1, max_size=4,
    )
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(LATENTS, st.sampled_from(CANDIDATES))
def test_round_trip_every_candidate(latents, candidate):
    tables, report = fit_context_tables(lambda: iter(latents), [candidate])
    assert report["chosen"] == "S%dK%d" % candidate
    coder = LatentCoder(tables)
    for latent in latents:
        data = coder.encode(latent)
        np.testing.assert_array_equal(coder.decode(data, *latent.shape[1:]), latent)


@settings(max_examples=30, deadline=None)
@given(LATENTS)
def test_tables_rebuild_from_their_stored_form(latents):
    tables, _ = fit_context_tables(lambda: iter(latents))
    again = ContextTables.from_counts(
        tables.offsets, tables.lengths, tables.modes, tables.spatial_thresholds, tables.channel_thresholds, tables.counts_q
    )  # fmt: skip
    np.testing.assert_array_equal(again.freqs, tables.freqs)
    again.validate()


def test_channel_model_gives_version_1_bitstreams(rng):
    """S = K = 1 read from a version-1 table codes exactly as version 1 did: channel by channel, raster."""
    latents = [np.round(rng.laplace(0, 3, (3, 5, 6))).astype(np.int32) for _ in range(3)]
    channel = build_tables(latents)
    import constriction

    for latent in latents:
        enc = constriction.stream.queue.RangeEncoder()
        for c in range(3):
            probs = channel.probabilities(c)
            enc.encode((latent[c].ravel() - channel.offsets[c]).astype(np.int32),
                       constriction.stream.model.Categorical(probs, perfect=False))  # fmt: skip
        v1 = enc.get_compressed().astype("<u4").tobytes()
        assert LatentCoder(channel).encode(latent) == v1
        assert LatentCoder(ContextTables.from_channel_tables(channel)).encode(latent) == v1


def test_count_codes():
    counts = np.concatenate([np.arange(0, 3000), np.array([10**6, 10**9, 10**12])])
    back = dequantize_counts(quantize_counts(counts))
    assert back[0] == 0 and (back[1:16] == counts[1:16]).all()
    assert (back <= counts).all()
    assert (back[1:3000] * 8 >= counts[1:3000] * 7).all()  # relative error below 1/8
    assert np.all(np.diff(dequantize_counts(np.arange(256, dtype=np.uint8))) > 0)


def test_normalize_is_exact_and_positive():
    counts = np.array([[0, 0, 0, 0], [5, 0, 1, 10**9], [7, 7, 7, 7]], dtype=np.int64)
    freqs = normalize_counts(counts, 3)
    assert (freqs[:, :3].astype(np.int64).sum(1) == 1 << PRECISION).all()
    assert (freqs[:, :3] >= 1).all() and (freqs[:, 3] == 0).all()


def test_spatial_activity_reads_only_anchors():
    a = np.arange(20).reshape(4, 5)
    anchor = anchor_mask(4, 5)
    changed = np.where(anchor, a, 999)  # values off the anchors must not matter
    np.testing.assert_array_equal(spatial_activity(a, anchor), spatial_activity(changed, anchor))
    # position (0, 1) has anchor neighbours (0, 0), (0, 2), (1, 1): 4·(0 + 2 + 6) // 3
    assert spatial_activity(a, anchor)[0, 1] == (4 * (0 + 2 + 6)) // 3


def _clustered(rng, n=150, c=8, side=8):
    """Latents whose magnitude comes in spatial patches shared by all channels (like real ones)."""
    out = []
    for _ in range(n):
        scale = np.kron(np.exp(rng.uniform(np.log(0.1), np.log(8), (side // 4, side // 4))), np.ones((4, 4)))
        out.append(np.round(rng.laplace(0, 1, (c, side, side)) * scale).astype(np.int32))
    return out


def test_fit_chooses_contexts_when_they_pay(rng):
    latents = _clustered(rng)
    tables, report = fit_context_tables(lambda: iter(latents))
    plain = report["candidates"]["S1K1"]
    best = report["candidates"][report["chosen"]]
    assert report["chosen"] != "S1K1"
    assert best["symbol_bytes"] + best["table_bytes"] < 0.92 * (plain["symbol_bytes"] + plain["table_bytes"])
    coded = sum(len(LatentCoder(tables).encode(y)) for y in latents)
    flat = sum(len(LatentCoder(build_tables(latents)).encode(y)) for y in latents)
    assert coded < 0.95 * flat  # real bitstream bytes, not only the estimate


def test_fit_keeps_the_channel_model_for_unstructured_latents(rng):
    latents = [rng.integers(-2, 3, (4, 3, 3)).astype(np.int32) for _ in range(3)]  # i.i.d., few symbols
    _, report = fit_context_tables(lambda: iter(latents))
    assert report["chosen"] == "S1K1"  # contexts cannot pay for their tables here


def test_symbol_outside_the_tables_is_refused(rng):
    latents = [rng.integers(-3, 4, (2, 4, 4)).astype(np.int32)]
    tables, _ = fit_context_tables(lambda: iter(latents))
    bad = latents[0].copy()
    bad[1, 2, 2] = 50
    with pytest.raises(ValueError, match="channel 1 has values outside its table"):
        LatentCoder(tables).encode(bad)


def test_contexts_must_save_enough_to_cost_decode_time(rng, monkeypatch):
    import archiver.codec.context as context

    latents = _clustered(rng)
    _, report = fit_context_tables(lambda: iter(latents))
    assert report["chosen"] != "S1K1"
    monkeypatch.setattr(context, "MIN_CONTEXT_GAIN", 0.5)  # no layout saves half the bytes
    _, report = fit_context_tables(lambda: iter(latents))
    assert report["chosen"] == "S1K1"
