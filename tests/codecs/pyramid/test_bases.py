"""Base codecs: the released bases are pinned, a missing base is a clear error, and a model stored as
its difference from a base comes back exactly as the fine-tuned int8 model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.codecs.pyramid import bases
from archiver.codecs.pyramid.bases import BASES, base_file, from_delta, pyramid_reference, to_delta
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS, PyramidSpec
from archiver.errors import CorruptArchiveError, MissingBaseError
from archiver.codecs.pyramid.model import PyramidCodec
from archiver.codecs.pyramid.base import find_pyramid_base, save_pyramid_base
from archiver.codecs.pyramid.train import context_net, synthesis_arrays

#: The released bases and their SHA-256, written out here on purpose: a released base never
#: changes (archives that name it must keep decoding); a new base gets a new id.
PINNED = {
    "pyramid-b1": "bf1e38b7fffd3f763ec50ac9f8d875b21a21d2cce7a3deeb37e10ad5dee343c9",
    "pyramid-b2": "3a980b82b2e0d05d498aa51a7cac9a607378d02c3be6d601dc123a45958535d1",
    "pyramid-b3": "5c7f5fb7410a985e288d962d26594078ea7293715898e76f3df4c09e23f353f6",
}

#: The released base graphs (``<id>.graph.onnx``), pinned the same way.
PINNED_GRAPHS = {
    "pyramid-b1": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
    "pyramid-b2": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
    "pyramid-b3": "4bc469530c9f61776c8ea94b7291b85941d16ef5654e1cd59f9a02b73a14224d",
}

FORMAT = Path(__file__).resolve().parents[3] / "docs" / "FORMAT.md"


def test_released_bases_are_pinned_and_documented():
    assert BASES == PINNED
    spec = FORMAT.read_text()
    for base_id, digest in BASES.items():
        path = bases.WEIGHTS_DIR / f"{base_id}.npz"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, base_id
        assert base_id in spec and digest in spec, f"{base_id} is not listed in docs/FORMAT.md"
        assert base_file(base_id, digest) == path


def test_released_base_graphs_are_pinned_documented_and_the_specs_graph():
    from archiver.codecs.pyramid.bases import BASE_GRAPHS, base_graph, load_base, shipped_graph
    from archiver.runtime.graph import graph_only
    from archiver.codecs.pyramid.graph import build_pyramid_graph

    assert BASE_GRAPHS == PINNED_GRAPHS and set(BASE_GRAPHS) <= set(BASES)
    spec_text = FORMAT.read_text()
    for base_id, digest in BASE_GRAPHS.items():
        data = base_graph(base_id, digest)
        assert hashlib.sha256(data).hexdigest() == digest and digest in spec_text
        assert shipped_graph(base_id) == (data, digest)
        # the same network as the one pack builds for the base's spec (names, shapes, operators)
        meta, _ = load_base(bases.WEIGHTS_DIR / f"{base_id}.npz")
        import onnx

        built = onnx.load_from_string(graph_only(build_pyramid_graph(PyramidSpec.from_dict(meta["spec"]))))
        shipped = onnx.load_from_string(data)
        assert built.graph == shipped.graph and built.opset_import == shipped.opset_import
    with pytest.raises(MissingBaseError, match=r"graph of base codec pyramid-b1 \(sha256 (ef){32}\)"):
        base_graph("pyramid-b1", "ef" * 32)


def test_unknown_base_names_id_and_hash():
    with pytest.raises(MissingBaseError, match=r"pyramid-z9 \(sha256 (ab){32}\).*does not ship"):
        base_file("pyramid-z9", "ab" * 32)


def test_base_with_another_hash_is_refused(monkeypatch, tmp_path):
    (tmp_path / "pyramid-t1.npz").write_bytes(b"not the released file")
    monkeypatch.setitem(BASES, "pyramid-t1", "cd" * 32)
    with pytest.raises(MissingBaseError, match="does not have sha256"):
        base_file("pyramid-t1", "cd" * 32, tmp_path)


def _fine_tuned(spec: PyramidSpec, seed: int) -> tuple[PyramidCodec, PyramidCodec]:
    torch.manual_seed(seed)
    base = PyramidCodec(spec)
    tuned = PyramidCodec(spec)
    tuned.load_state_dict(base.state_dict())
    with torch.no_grad():  # what fine-tuning does: small moves of every weight
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return base, tuned


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), order=st.sampled_from(["checkerboard", "wavefront"]))
def test_delta_round_trip_is_the_fine_tuned_int8_model(seed, order, tmp_path_factory):
    spec = PyramidSpec(context=order)
    base, tuned = _fine_tuned(spec, seed)
    path = tmp_path_factory.mktemp("base") / "pyramid-t1.npz"
    save_pyramid_base(path, base, {"test": True})
    ref = pyramid_reference(path)
    decoder = synthesis_arrays(tuned, 4, ref["decoder"])
    entropy = {f"context.{k}": v for k, v in context_net(tuned).to_arrays().items()}
    entropy["tables.lows"] = np.arange(3, dtype=np.int32)  # per collection: stored whole
    for arrays, reference in ((decoder, ref["decoder"]), (entropy, ref["entropy"])):
        stored = to_delta(arrays, reference)
        assert not any(k.endswith(".scale") for k in stored)  # implied by the base
        back = from_delta(stored, reference)
        assert back.keys() == arrays.keys()
        for k in arrays:
            assert back[k].dtype == arrays[k].dtype and np.array_equal(back[k], arrays[k]), k
    # The base's own reference is its self-contained export: a base left as is costs zeros only.
    same = to_delta(synthesis_arrays(base, 4), ref["decoder"])
    assert all(not v.any() for k, v in same.items() if k.endswith(".delta"))


def test_delta_out_of_range_or_misshapen_is_corrupt():
    ref = {"w.q": np.full((2, 2), 120, np.int8), "w.scale": np.ones(2, np.float32)}
    with pytest.raises(CorruptArchiveError, match="out of range"):
        from_delta({"w.q.delta": np.full((2, 2), 10, np.int16)}, ref)
    with pytest.raises(CorruptArchiveError, match="no base array"):
        from_delta({"w.q.delta": np.zeros((3,), np.int16)}, ref)
    with pytest.raises(CorruptArchiveError, match="no base array"):
        from_delta({"other.delta": np.zeros((2, 2), np.int16)}, ref)


def test_find_pyramid_base_matches_the_spec_only(tmp_path):
    spec = PyramidSpec()
    save_pyramid_base(tmp_path / "pyramid-t1.npz", PyramidCodec(spec), {})
    found = find_pyramid_base(spec, tmp_path)
    assert found is not None and found.id == "pyramid-t1"
    assert found.sha256 == hashlib.sha256((tmp_path / "pyramid-t1.npz").read_bytes()).hexdigest()
    assert find_pyramid_base(PyramidSpec(hidden=(16, 16)), tmp_path) is None
    assert find_pyramid_base(PyramidSpec(context="wavefront"), tmp_path) is None  # another context order
    # the wavefront's tile shapes no weight: a base serves every tile, and nothing else changes
    wave = PyramidSpec(context="wavefront", context_tile=64)
    save_pyramid_base(tmp_path / "pyramid-t2.npz", PyramidCodec(wave), {})
    for tile in (8, 128, 4096):
        assert find_pyramid_base(PyramidSpec(context="wavefront", context_tile=tile), tmp_path).id == "pyramid-t2"
    assert find_pyramid_base(PyramidSpec(context="wavefront", context_hidden=12, context_tile=128), tmp_path) is None


@pytest.mark.parametrize("spec,base_id", [
    (PyramidSpec(context="checkerboard"), "pyramid-b1"),
    (PyramidSpec(context="wavefront"), "pyramid-b2"),
    (PYRAMID_PRESETS["default"], "pyramid-b3"),
])  # fmt: skip
def test_shipped_pyramid_base_already_codes_an_unseen_image(spec, base_id):
    """Each released base (pyramid-b1: checkerboard, pyramid-b2: wavefront, pyramid-b3: wavefront
    with a 12-wide context network, the default) is found for exactly its spec and reconstructs a
    synthetic image far better than the random start it replaces, at every quality, and spends more
    bits for more PSNR as the quality rises."""
    from conftest import smooth_image

    base = find_pyramid_base(spec)
    assert base is not None and base.id == base_id and base.sha256 == BASES[base.id]
    x = torch.from_numpy(smooth_image(np.random.default_rng(5), 128, 96)).permute(2, 0, 1)[None].float() / 255

    def psnr_bpp(codec, q):
        with torch.no_grad():
            x_hat, bits = codec.eval()(x, q, noise=False)
        mse = torch.mean((x_hat.clamp(0, 1) - x) ** 2).item()
        return 10 * np.log10(1 / mse), bits.item() / (x.shape[2] * x.shape[3])

    torch.manual_seed(0)
    codec = PyramidCodec(spec)
    random_psnr, _ = psnr_bpp(codec, 4)
    codec.load_state_dict(base.state_dict())
    points = [psnr_bpp(codec, q) for q in (1, 4, 8)]
    assert points[1][0] > random_psnr + 5.0, (random_psnr, points)
    assert points[0][0] < points[1][0] < points[2][0] and points[0][1] < points[1][1] < points[2][1], points
