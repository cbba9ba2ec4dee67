"""The codec seam: old archives are the autoencoder, a codec attribute is validated before use."""

import json
from pathlib import Path

import pytest

from archiver.codecs import CodecDescription, describe, read_side
from archiver.codecs.autoencoder.read import AutoencoderReadSide
from archiver.codecs.pyramid.read import PyramidReadSide
from archiver.container.reader import ArchiveReader
from archiver.errors import CorruptArchiveError

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


class FakeReader:
    def __init__(self, codec, version=3):
        self.path, self.format_version = Path("x.nca"), version
        self.config, self.training = {"model": {}}, {"crop": 64}
        self._codec = codec

    def codec_attr(self):
        return self._codec

    @property
    def min_size(self):
        return 64


@pytest.mark.parametrize("name", ["v1-mixed.nca", "v2-mixed.nca"])
def test_old_archives_are_the_autoencoder(name):
    with ArchiveReader(GOLDEN / name) as reader:
        desc = describe(reader)
        side = read_side(reader)
    assert desc.name == "autoencoder" and desc.version == 1
    assert isinstance(side, AutoencoderReadSide) and side.stride == 16


def test_pyramid_description_gives_its_read_side():
    spec = {"channels": [1, 1, 1, 1], "hidden": [8], "refine": 1}
    side = read_side(FakeReader(CodecDescription("pyramid", 1, spec).to_json()))
    assert isinstance(side, PyramidReadSide)
    assert side.stride == 8 and side.min_size == 0
    assert side.tile * side.stride == 512 and side.halo * side.stride >= 64


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        json.dumps({"name": "pyramid"}),
        json.dumps({"name": "pyramid", "version": 9, "spec": {}}),
        json.dumps({"name": "jpeg", "version": 1, "spec": {}}),
        # version 3 takes its graph from the base it names; versions 1–2 cannot
        json.dumps({"name": "pyramid", "version": 3, "spec": {}, "base": {"id": "pyramid-b1", "sha256": "ab"}}),
        json.dumps({"name": "pyramid", "version": 3, "spec": {}}),
        json.dumps({"name": "pyramid", "version": 2, "spec": {}, "base": {"id": "b", "sha256": "ab", "graph": "cd"}}),
        json.dumps({"name": "pyramid", "version": 1, "spec": {}, "base": "not an object"}),
    ],
)
def test_bad_codec_descriptions_are_refused(raw):
    with pytest.raises(CorruptArchiveError):
        describe(FakeReader(raw))


WAVE = {"channels": [1, 1, 1, 1], "context": "wavefront", "context_tile": 16}


def test_version_4_names_a_context_order_with_or_without_a_base_graph():
    stored = read_side(FakeReader(CodecDescription("pyramid", 4, WAVE).to_json()))
    named = read_side(FakeReader(CodecDescription("pyramid", 4, WAVE, {"id": "b", "sha256": "ab", "graph": "cd"}).to_json()))
    assert stored.spec.context == named.spec.context == "wavefront" and stored.spec.phases == 1
    assert stored.spec.context_tile == 16


@pytest.mark.parametrize(
    "desc",
    [
        CodecDescription("pyramid", 2, WAVE),  # the order needs version 4
        CodecDescription("pyramid", 3, WAVE, {"id": "b", "sha256": "ab", "graph": "cd"}),
        CodecDescription("pyramid", 4, {**WAVE, "context": "spiral"}),
        CodecDescription("pyramid", 4, {**WAVE, "context_tile": 0}),
        CodecDescription("pyramid", 4, {**WAVE, "context_tile": "big"}),
    ],
)
def test_impossible_context_orders_are_refused(desc):
    with pytest.raises(CorruptArchiveError):
        read_side(FakeReader(desc.to_json()))


def test_codec_attribute_needs_format_version_3():
    with pytest.raises(CorruptArchiveError):
        describe(FakeReader(CodecDescription("pyramid", 1, {}).to_json(), version=2))


def test_default_pyramid_decoder_fits_the_mac_budget():
    """Synthesis plus context network at most 3 k multiply–accumulates per pixel (the issue's bound)."""
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS, context_macs_per_pixel

    spec = PYRAMID_PRESETS["default"]
    assert 0 < spec.macs_per_pixel() + context_macs_per_pixel(spec) <= 3000


def test_pyramid_synthesis_leaves_the_entropy_thread_a_core(monkeypatch):
    """Without ``threads``, the pyramid synthesis runs on every core but one (at least one)."""
    import os

    from archiver.codecs.pyramid.read import synthesis_threads

    for cores, threads in ((1, 1), (2, 1), (8, 7)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert synthesis_threads() == threads
