"""Pyramid archives made from a base codec: by default they store their model as a difference from
the base and decode bit-exactly through it; without the base they fail with one clear line;
``--self-contained`` archives need no base at all."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from archiver.codecs.pyramid import bases
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
from archiver.codecs.pyramid.model import PyramidCodec
from archiver.codecs.pyramid.base import save_pyramid_base
from conftest import build_mixed_tree, run_cli as run


@pytest.fixture(scope="module")
def base_and_archives(tmp_path_factory):
    """A test base (registered for the module), and two packs of the mixed tree from it."""
    root = tmp_path_factory.mktemp("based")
    weights = root / "weights"
    torch.manual_seed(0)
    save_pyramid_base(weights / "pyramid-t1.npz", PyramidCodec(PYRAMID_PRESETS["default"]), {"test": True})
    digest = hashlib.sha256((weights / "pyramid-t1.npz").read_bytes()).hexdigest()
    mp = pytest.MonkeyPatch()
    mp.setattr(bases, "WEIGHTS_DIR", weights)
    mp.setitem(bases.BASES, "pyramid-t1", digest)
    src = root / "src"
    build_mixed_tree(src)
    delta, whole = root / "delta.nca", root / "whole.nca"
    common = ("--codec", "pyramid", "--max-steps", "30", "--refine", "2", "--quiet")
    run("pack", src, "-o", delta, *common)
    run("pack", src, "-o", whole, "--self-contained", *common)
    yield {"root": root, "digest": digest, "delta": delta, "whole": whole, "mp": mp}
    mp.undo()


def test_delta_archive_names_its_base_and_is_smaller(base_and_archives):
    info = json.loads(run("info", base_and_archives["delta"], "--json").output)
    whole = json.loads(run("info", base_and_archives["whole"], "--json").output)
    assert info["codec"]["base"] == {"id": "pyramid-t1", "sha256": base_and_archives["digest"]}
    assert info["warm_start"] == "pyramid-t1" and whole["warm_start"] == "pyramid-t1"
    assert "base" not in whole["codec"]
    assert info["model_bytes"] < whole["model_bytes"]


def test_delta_archive_decodes_bit_exactly_through_the_base(base_and_archives, tmp_path):
    """verify --decode compares every image's CRC with the one pack measured through the fine-tuned
    int8 model: base + delta rebuilds that model exactly."""
    run("verify", base_and_archives["delta"], "--decode")
    run("extract", base_and_archives["delta"], "-o", tmp_path / "out", "--quiet")


def test_missing_base_is_one_clear_error(base_and_archives, tmp_path):
    mp = base_and_archives["mp"]
    empty = tmp_path / "no-weights"
    empty.mkdir()
    mp.setattr(bases, "WEIGHTS_DIR", empty)
    try:
        out = tmp_path / "out"
        result = run("extract", base_and_archives["delta"], "-o", out, "--quiet", code=2)
        assert "pyramid-t1" in result.output and base_and_archives["digest"] in result.output
        assert str(base_and_archives["delta"]) in result.output
        assert not out.exists() or not any(out.rglob("*.png")), "no partial output"
        run("extract", base_and_archives["whole"], "-o", tmp_path / "whole-out", "--quiet")
        run("verify", base_and_archives["whole"], "--decode")
    finally:
        mp.setattr(bases, "WEIGHTS_DIR", base_and_archives["root"] / "weights")


def test_append_to_a_delta_archive_keeps_base_and_delta(base_and_archives, tmp_path):
    import shutil

    import numpy as np
    from PIL import Image

    from archiver.append import append

    archive = tmp_path / "a.nca"
    shutil.copy(base_and_archives["delta"], archive)
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(more / "flat.png")
    report = append(archive, more, steps=3)
    assert report.method == "base-encoder"  # the base's encoder is shipped (here: the test base)
    info = json.loads(run("info", archive, "--json").output)
    assert info["codec"]["base"] == {"id": "pyramid-t1", "sha256": base_and_archives["digest"]}
    assert info["images"] == json.loads(run("info", base_and_archives["delta"], "--json").output)["images"] + 1
    run("verify", archive, "--decode")


def test_graph_from_the_base_is_named_not_stored(base_and_archives, tmp_path):
    """A base that ships its graph: the archive (codec version 5, as every pack writes) stores no graph, decodes
    bit-exactly, appends, and without the graph file fails with one clear line."""
    from archiver.runtime.graph import graph_only
    from archiver.codecs.pyramid.graph import build_pyramid_graph

    from archiver.append import append

    mp, weights = base_and_archives["mp"], base_and_archives["root"] / "weights"
    graph = graph_only(build_pyramid_graph(PYRAMID_PRESETS["default"]))
    (weights / "pyramid-t1.graph.onnx").write_bytes(graph)
    mp.setitem(bases.BASE_GRAPHS, "pyramid-t1", hashlib.sha256(graph).hexdigest())
    src = base_and_archives["root"] / "src"
    archive = tmp_path / "named.nca"
    try:
        run("pack", src, "-o", archive, "--codec", "pyramid", "--max-steps", "30", "--refine", "2", "--quiet")
        info = json.loads(run("info", archive, "--json").output)
        delta = json.loads(run("info", base_and_archives["delta"], "--json").output)
        assert info["codec"]["version"] == 5
        assert info["codec"]["base"]["graph"] == hashlib.sha256(graph).hexdigest()
        assert info["model_bytes"] < delta["model_bytes"] - 500  # the graph (zstd) is not in the archive
        run("verify", archive, "--decode")
        run("extract", archive, "-o", tmp_path / "out", "--quiet")
        more = tmp_path / "more"
        more.mkdir()
        import numpy as np
        from PIL import Image

        Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(more / "flat.png")
        append(archive, more, steps=3)
        assert json.loads(run("info", archive, "--json").output)["codec"]["base"]["graph"] == info["codec"]["base"]["graph"]
        run("verify", archive, "--decode")
        (weights / "pyramid-t1.graph.onnx").unlink()
        out = tmp_path / "out2"
        result = run("extract", archive, "-o", out, "--quiet", code=2)
        assert "graph of base codec pyramid-t1" in result.output and str(archive) in result.output
        assert not out.exists() or not any(out.rglob("*.png")), "no partial output"
    finally:
        mp.delitem(bases.BASE_GRAPHS, "pyramid-t1", raising=False)
        (weights / "pyramid-t1.graph.onnx").unlink(missing_ok=True)
