"""The extraction's entropy rounds (archiver.decode)."""

from __future__ import annotations

from types import SimpleNamespace

from archiver.decode import FIRST_ROUND_SHARE, ArchiveDecoder


def test_rounds_grow_from_a_share_of_the_cap_and_keep_every_batch_in_order():
    decoder = ArchiveDecoder.__new__(ArchiveDecoder)  # only what _rounds reads
    decoder.reader = SimpleNamespace(latent_shape=lambda entry: (16, 16))  # 256² pixels at stride 16
    decoder._side = SimpleNamespace(stride=16)
    chunks = [[(c, i) for i in range(8)] for c in range(12)]  # batches of 8 images of 65,536 px
    rounds = decoder._rounds(chunks, 2_000_000)
    assert FIRST_ROUND_SHARE == 4
    # 0.5 Mpx: one batch (one at least); 1 Mpx: one (two are 1.05); 2 Mpx: three (four are 2.1), …
    assert [len(r) for r in rounds] == [1, 1, 3, 3, 3, 1]
    assert [chunk for r in rounds for chunk in r] == chunks
