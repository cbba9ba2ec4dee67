"""Per-image tails (pyramid codec version 6): their byte layout, the tail graph against the plain one
and the torch synthesis, the runtime that sends each image through its own graph, learning them
while annealing, and a pack → verify → extract → append round trip that keeps them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codecs.pyramid import anneal, tail_fit
from archiver.codecs.pyramid.tail import (
    TAIL_MAX_Q, TailRuntime, decode_tail, encode_tail, tail_input, tail_values,
)  # fmt: skip
from archiver.errors import CorruptArchiveError
from conftest import run_cli as run

CIN = 16


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-TAIL_MAX_Q, TAIL_MAX_Q), min_size=tail_values(CIN), max_size=tail_values(CIN)),
       st.integers(4, 16))  # fmt: skip
def test_tail_bytes_round_trip(values, k):
    q = np.array(values, np.int64)
    data = encode_tail(q, k)
    got_k, got = decode_tail(data, CIN)
    assert got_k == k and np.array_equal(got, q)


def test_tail_bytes_are_exp_golomb_codes():
    q = np.zeros(tail_values(CIN), np.int64)
    assert encode_tail(q, 10) == bytes([10]) + b"\xff" * 6 + b"\xe0"  # 51 one-bit codes, five pad bits
    q[0], q[1] = 1, -1  # u = 1 → "010", u = 2 → "011"
    assert encode_tail(q, 10)[1] == 0b01001111


@pytest.mark.parametrize("damage", ["step", "extra byte", "pad bits", "truncated", "too long", "empty"])
def test_damaged_tails_are_refused(damage):
    data = bytearray(encode_tail(np.arange(tail_values(CIN)) - 20, 10))
    if damage == "step":
        data[0] = 3
    elif damage == "extra byte":
        data += b"\x00"
    elif damage == "pad bits":
        data = bytearray(encode_tail(np.zeros(tail_values(CIN), np.int64), 10))  # 51 bits: 5 of padding
        data[-1] |= 1
    elif damage == "truncated":
        data = data[:-2]
    elif damage == "too long":
        data += b"\x00" * 400
    else:
        data = bytearray()
    with pytest.raises(CorruptArchiveError):
        decode_tail(bytes(data), CIN)


def test_tail_input_appends_constant_channels():
    latent = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
    q = np.arange(tail_values(CIN)) - 25
    x = tail_input(latent, encode_tail(q, 8), CIN)
    assert x.dtype == np.float32 and x.shape == (2 + tail_values(CIN), 3, 4)
    assert np.array_equal(x[:2], latent) and np.array_equal(x[2:, 1, 2], q / 256.0)
    assert not tail_input(latent, b"", CIN)[2:].any()


@pytest.fixture(scope="module")
def synthesis():
    """(spec, int8 arrays at q4, codec) of the shipped base."""
    from archiver.codecs.pyramid.base import find_pyramid_base
    from archiver.codecs.pyramid.model import PyramidCodec
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
    from archiver.codecs.pyramid.train import synthesis_arrays

    spec = PYRAMID_PRESETS["default"]
    base = find_pyramid_base(spec)
    if base is None:
        pytest.skip("no shipped pyramid base")
    codec = PyramidCodec(spec)
    codec.load_state_dict(base.state_dict())
    return spec, synthesis_arrays(codec.eval(), 4), codec


def _runtimes(spec, arrays):
    from archiver.codecs.pyramid.graph import build_pyramid_graph
    from archiver.codecs.pyramid.read import synthesis_runtime
    from archiver.runtime.graph import attach_weights, graph_only

    plain = synthesis_runtime(attach_weights(graph_only(build_pyramid_graph(spec)), arrays), spec.stride, 6)
    tail_model = attach_weights(graph_only(build_pyramid_graph(spec, tail=True)), arrays)
    made = []

    def make():
        made.append(1)
        return synthesis_runtime(tail_model, spec.stride, 6)

    return plain, make, made


def test_tail_graph_is_the_plain_graph_plus_the_delta(synthesis):
    """Zero tails: the very pixels of the plain graph; a tail: the torch synthesis with the same
    deltas on its last 1×1 layer (to one level at a rounding edge)."""
    from archiver.codecs.pyramid.fastsynth import OptimSynthesis
    from archiver.codecs.pyramid.train import int8_synthesis

    spec, arrays, codec = synthesis
    plain, make, _ = _runtimes(spec, arrays)
    tailed = make()
    rng = np.random.default_rng(0)
    latent = rng.integers(-3, 4, (spec.packed_channels, 4, 5)).astype(np.int32)
    zero = tail_input(latent, b"", CIN)
    assert np.array_equal(tailed.decode_batch(zero[None]), plain.decode_batch(latent[None].astype(np.float32)))
    q = rng.integers(-80, 80, tail_values(CIN))
    out = tailed.decode_batch(tail_input(latent, encode_tail(q), CIN)[None])[0]
    d = torch.from_numpy(q * 2.0**-10).float()
    optim = OptimSynthesis(int8_synthesis(codec, arrays))
    with torch.no_grad():
        ref = optim(torch.from_numpy(latent[None]).float(), (d[: 3 * CIN].reshape(1, 3, CIN), d[3 * CIN :][None]))
    ref = torch.round(ref.clamp(0, 1) * 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - ref).max() <= 1 and np.mean(out != ref) < 0.01
    assert np.abs(out.astype(int) - plain.decode_batch(latent[None].astype(np.float32))[0]).mean() > 1


def test_tail_runtime_sends_each_image_through_its_own_graph(synthesis):
    spec, arrays, _ = synthesis
    plain, make, made = _runtimes(spec, arrays)
    runtime = TailRuntime(plain, make, spec.packed_channels)
    rng = np.random.default_rng(2)
    latents = [rng.integers(-3, 4, (spec.packed_channels, 3, 3)).astype(np.int32) for _ in range(3)]
    plain_only = np.stack([tail_input(x, b"", CIN) for x in latents])
    assert np.array_equal(runtime.decode_batch(plain_only), plain.decode_batch(plain_only[:, : spec.packed_channels]))
    assert not made  # no image had a tail: the tail graph was never built
    data = encode_tail(rng.integers(-50, 50, tail_values(CIN)))
    mixed = np.stack([tail_input(x, data if k == 1 else b"", CIN) for k, x in enumerate(latents)])
    out = runtime.decode_batch(mixed)
    assert made == [1]
    for k in range(3):  # alone or in a batch, an image decodes to the same pixels
        assert np.array_equal(out[k], runtime.decode(mixed[k], 96, 96))
    alone = runtime.decode_batch(plain_only)
    assert np.array_equal(out[0], alone[0]) and np.array_equal(out[2], alone[2])
    assert not np.array_equal(out[1], alone[1])


def test_annealing_with_tails_keeps_only_tails_that_pay(synthesis):
    """An image whose colours the decoder gets wrong keeps a tail that lowers its loss, bits
    included; with a huge cost per bit (few pixels) none is kept."""
    from archiver.codecs.pyramid.anneal import _LossOf, anneal_latents, optimizable
    from archiver.codecs.pyramid.infer import encode_continuous
    from archiver.codecs.pyramid.levels import LAMBDAS
    from archiver.codecs.pyramid.tail_fit import ImageTails, TailedSynthesis
    from archiver.codecs.pyramid.train import int8_synthesis

    spec, arrays, codec = synthesis
    synth = int8_synthesis(codec, arrays)
    y, x = np.mgrid[:128, :128]
    rgb = np.stack([(x + y) % 256, 255 - (x + y) % 256, (2 * x) % 256], -1).astype(np.uint8)
    (padded, z), valid = encode_continuous(codec, rgb, 4)
    torch.manual_seed(0)
    tails = ImageTails(1, CIN)
    latent = anneal_latents(codec, synth, padded, z, valid, LAMBDAS[4], 60, tails=tails)
    assert tails.kept[0]  # this image keeps one
    run = TailedSynthesis(optimizable(synth), tails)
    run.quantized = True
    with_tail = _LossOf(codec, run, padded, valid, LAMBDAS[4]).hard(latent)[0] + 8 * len(tails.kept[0]) / 128**2
    without = _LossOf(codec, optimizable(synth), padded, valid, LAMBDAS[4]).hard(latent)[0]
    assert with_tail < without
    k, q = decode_tail(tails.kept[0], CIN)
    assert np.allclose(q * 2.0**-k, torch.cat([tails.dw[0].flatten(), tails.db[0]]).detach().numpy(), atol=1e-7)
    # a tail priced as if the image had 4 pixels never pays
    small = ImageTails(1, CIN)
    from archiver.codecs.pyramid.tail_fit import choose_tails

    small.dw.data.fill_(0.01)
    small.keep_best(torch.tensor([True]))
    run_small = TailedSynthesis(optimizable(synth), small)
    choose_tails(_LossOf(codec, run_small, padded, valid, LAMBDAS[4]), run_small, latent, 4)
    assert small.kept == [b""]


def _pack(tmp_path, monkeypatch, *extra):
    from PIL import Image

    monkeypatch.setattr(anneal, "MIN_STEPS", 4)
    monkeypatch.setattr(anneal, "STEPS_PER_TRIAL", 2)
    monkeypatch.setattr(tail_fit, "TAIL_MIN_PIXELS", 0)
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for k in range(3):
        y, x = np.mgrid[:64, :80]
        rgb = np.stack([(x * 3 + 20 * k) % 256, 255 - (y * 3) % 256, (x * y) % 256], -1) + rng.normal(0, 3, (64, 80, 3))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(src / f"{k}.png")
    run("pack", src, "-o", tmp_path / "a.nca", "--quality", "4", "--max-steps", "20", "--refine", "10", "--quiet", *extra)
    return tmp_path / "a.nca"


def test_a_pack_keeps_tails_and_extracts_and_appends_them(tmp_path, monkeypatch):
    from PIL import Image

    from archiver.container.reader import ArchiveReader

    archive = _pack(tmp_path, monkeypatch)
    with ArchiveReader(archive) as reader:
        assert reader.codec.desc.version == 6 and reader.has_model("tail_onnx")
        tails = [reader.read_image(e)[1].codec for e in reader.entries if e.kind.name == "IMAGE"]
    assert any(tails)
    info = json.loads(run("info", archive, "--json").output)
    assert info["tails"]["images"] == sum(1 for t in tails if t) and info["tails"]["bytes"] == sum(map(len, tails))
    run("verify", archive, "--decode")
    run("extract", archive, "-o", tmp_path / "out", "--quiet")
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(more / "new.png")
    run("append", archive, more, "--quiet")
    with ArchiveReader(archive) as reader:
        assert reader.codec.desc.version == 6
        assert [reader.read_image(e)[1].codec for e in reader.entries if e.kind.name == "IMAGE"][:3] == tails
    run("verify", archive, "--decode")


def test_no_image_tails_writes_version_5(tmp_path, monkeypatch):
    from archiver.container.reader import ArchiveReader

    archive = _pack(tmp_path, monkeypatch, "--no-image-tails")
    with ArchiveReader(archive) as reader:
        assert reader.codec.desc.version == 5 and not reader.has_model("tail_onnx")


def test_tails_where_the_codec_version_has_none_are_refused():
    from types import SimpleNamespace

    from archiver.codecs import CodecDescription
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
    from archiver.codecs.pyramid.read import PyramidReadSide
    from archiver.container.records import ImageRecord

    spec = PYRAMID_PRESETS["default"].to_dict()
    reader = SimpleNamespace(path="x.nca", has_model=lambda name: False)
    side = PyramidReadSide(reader, CodecDescription("pyramid", 5, spec, {}))
    latent = np.zeros((PYRAMID_PRESETS["default"].packed_channels, 1, 1), np.int32)
    with pytest.raises(CorruptArchiveError, match="per-image codec data"):
        side.synthesis_input(latent, ImageRecord(b"", codec=encode_tail(np.zeros(tail_values(CIN), np.int64))))
    with pytest.raises(CorruptArchiveError, match="tail graph"):
        PyramidReadSide(reader, CodecDescription("pyramid", 6, spec, {}))


def test_check_decodable_checks_the_tail_graph():
    """extract and verify ask check_decodable before any output: a version-6 archive's tail graph
    is read then (its SHA-256 checked by the reader)."""
    from types import SimpleNamespace

    from archiver.codecs import CodecDescription
    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
    from archiver.codecs.pyramid.read import PyramidReadSide

    def damaged(name):
        raise CorruptArchiveError(f"x.nca: checksum mismatch in /model/{name}")

    spec = PYRAMID_PRESETS["default"].to_dict()
    reader = SimpleNamespace(path="x.nca", has_model=lambda name: True, onnx_graph=damaged)
    with pytest.raises(CorruptArchiveError, match="tail_onnx"):
        PyramidReadSide(reader, CodecDescription("pyramid", 6, spec, {})).check_decodable()
    PyramidReadSide(reader, CodecDescription("pyramid", 5, spec, {})).check_decodable()  # no tail graph read
