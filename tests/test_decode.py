"""The extraction's entropy rounds (archiver.decode)."""

from __future__ import annotations

from types import SimpleNamespace

from archiver.decode import LAST_ROUND_SHARE, ArchiveDecoder


def test_rounds_shrink_to_a_share_of_the_cap_and_keep_every_batch_in_order():
    decoder = ArchiveDecoder.__new__(ArchiveDecoder)  # only what _rounds reads
    decoder.reader = SimpleNamespace(latent_shape=lambda entry: (16, 16))  # 256² pixels at stride 16
    decoder._side = SimpleNamespace(stride=16)
    chunks = [[(c, i) for i in range(8)] for c in range(12)]  # batches of 8 images of 65,536 px
    rounds = decoder._rounds(chunks, 2_000_000)
    assert LAST_ROUND_SHARE == 4
    # cut from the end: 0.5 Mpx: one batch (one at least); 1 Mpx: one (two are 1.05); 2 Mpx: three
    # (four are 2.1), …; what is left first
    assert [len(r) for r in rounds] == [1, 3, 3, 3, 1, 1]
    assert [chunk for r in rounds for chunk in r] == chunks


def _fake_decoder(prepared: list, delay: float = 0.0):
    """An ArchiveDecoder whose entropy rounds and synthesis are stand-ins: each round is one batch
    of one entry; preparing a round records it (after ``delay`` seconds)."""
    import time

    decoder = ArchiveDecoder.__new__(ArchiveDecoder)
    decoder._chunks = lambda entries, batch_size, batch_pixels: [[e] for e in entries]
    decoder._rounds = lambda chunks, pixels: [[c] for c in chunks]
    decoder._ensure = lambda: None

    def prepare_many(chunks):
        time.sleep(delay)
        prepared.append(chunks[0][0])
        return [([None], None)]

    decoder._prepare_many = prepare_many
    decoder._finish_chunk = lambda chunk, records, latents, on_error, as_array: iter([(chunk[0], None, None)])
    return decoder


def test_rounds_come_back_in_order_with_the_thread_two_rounds_ahead():
    prepared: list = []
    decoder = _fake_decoder(prepared)
    entries = list(range(7))
    assert [entry for entry, _, _ in decoder._images(entries, 8, 1 << 20, None, False)] == entries
    assert prepared == entries


def test_a_consumer_that_stops_early_does_not_wait_for_every_queued_round():
    prepared: list = []
    decoder = _fake_decoder(prepared, delay=0.05)
    images = decoder._images(list(range(20)), 8, 1 << 20, None, False)
    assert next(images)[0] == 0
    images.close()  # rounds not yet started are cancelled: at most the running one finishes
    assert len(prepared) <= 2  # without the cancel: 3 (the running one and the one queued behind it)
