"""Sessions are built from the model bytes without the onnx package, to the same bytes onnx made.

:mod:`archiver.runtime.proto` replaced ``attach_weights`` and ``fold_dequantize`` written with onnx's
helpers (below as the reference, as they were); the bytes given to ONNX Runtime must not change, so
that decoded pixels stay bit for bit those pack measured. Reading an archive must import neither
onnx (half a second of start-up) nor torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from archiver.container.reader import ArchiveReader  # noqa: E402
from archiver.errors import CorruptArchiveError  # noqa: E402
from archiver.runtime import proto  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ARCHIVES = sorted(GOLDEN.glob("v*-mixed.nca"))


# -- the onnx-based implementations these functions replace (as in runtime/graph.py before) ------
def ref_attach(data: bytes, arrays) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ParseFromString(data)
    have = {t.name for t in model.graph.initializer}
    needed = {i for n in model.graph.node for i in n.input if "." in i} - have
    model.graph.initializer.extend(numpy_helper.from_array(arrays[name], name) for name in sorted(needed))
    return model


def ref_fold(model: onnx.ModelProto) -> onnx.ModelProto:
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    inits = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in inits for i in node.input):
            q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            shape = (-1,) + (1,) * (q.ndim - 1)
            weight = ((q - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return folded


def assert_same_as_onnx(graph: bytes, arrays) -> None:
    attached = proto.attach_weights(graph, arrays)
    reference = ref_attach(graph, arrays)
    assert attached == reference.SerializeToString()
    assert proto.fold_dequantize(attached) == ref_fold(reference).SerializeToString()


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_golden_session_bytes_are_onnx_bytes(archive):
    with ArchiveReader(archive) as reader:
        graph, arrays = reader.codec.graph(), reader.codec.model_arrays("decoder")  # base + delta; graph stored or named
    assert_same_as_onnx(graph, arrays)
    folded = onnx.ModelProto()
    folded.ParseFromString(proto.fold_dequantize(proto.attach_weights(graph, arrays)))
    assert not any(n.op_type == "DequantizeLinear" for n in folded.graph.node)
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in folded.graph.initializer)


def test_built_graphs_are_onnx_bytes():
    """The decoder (int8 and float32 weights), the post-filter and the pyramid, as pack builds them."""
    torch = pytest.importorskip("torch")
    from archiver.codecs.pyramid.plan import PyramidSpec
    from archiver.config import ModelConfig
    from archiver.model import int8
    from archiver.codecs.autoencoder.model import Autoencoder
    from archiver.model.denoiser import Denoiser, DenoiserConfig
    from archiver.codecs.pyramid.model import PyramidCodec
    from archiver.runtime.denoiser_graph import build_denoiser_graph
    from archiver.codecs.autoencoder.graph import build_graph
    from archiver.runtime.graph import graph_only
    from archiver.codecs.pyramid.graph import build_pyramid_graph

    torch.manual_seed(0)
    cfg = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)
    decoder = Autoencoder(cfg).decoder
    assert_same_as_onnx(graph_only(build_graph(cfg)), int8.quantize_weights(decoder))
    floats = {k: v.detach().numpy() for k, v in decoder.state_dict().items()}
    assert_same_as_onnx(graph_only(build_graph(cfg, int8=False)), floats)
    assert_same_as_onnx(graph_only(build_denoiser_graph(8, 2)), int8.quantize_weights(Denoiser(DenoiserConfig(8, 2))))
    spec = PyramidSpec(channels=(1, 1, 1, 1, 1, 1))
    arrays = int8.quantize_weights(PyramidCodec(spec).synthesis)
    arrays["quant.steps"] = np.linspace(0.5, 2, spec.levels).astype(np.float32)
    assert_same_as_onnx(graph_only(build_pyramid_graph(spec)), arrays)


@pytest.mark.parametrize(
    "array",
    [np.arange(-5, 7, dtype=np.int8).reshape(3, 4), np.float32(0.5) * np.ones((2, 1, 3, 3), np.float32),
     np.array(0.5, np.float32), np.zeros((0, 3), np.int8), np.arange(6, dtype=">f4"), np.arange(4, dtype=np.int64),
     np.array([True, False]), np.arange(3, dtype=np.uint16), np.arange(3, dtype=np.float16)],  # fmt: skip
    ids=lambda a: f"{a.dtype.str}{a.shape}",
)
def test_tensor_bytes_and_values_match_numpy_helper(array):
    data = proto._tensor("w.q", array)
    native = array.astype(array.dtype.newbyteorder("="))  # onnx takes native byte order only
    assert data == numpy_helper.from_array(native, "w.q").SerializeToString()
    back = proto._tensor_array(data)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_typed_data_tensors_read_as_onnx_reads_them():
    """Tensors written by other tools may hold values in the typed fields instead of raw_data."""
    cases = [
        helper.make_tensor("a", onnx.TensorProto.INT8, [2, 3], [-128, -1, 0, 1, 5, 127]),
        helper.make_tensor("b", onnx.TensorProto.FLOAT, [3], [0.25, -1.5, 3e-8]),
        helper.make_tensor("c", onnx.TensorProto.INT32, [2], [-(2**31), 2**31 - 1]),
        helper.make_tensor("d", onnx.TensorProto.DOUBLE, [1, 2], [1.0 / 3, -2.0]),
    ]
    for tensor in cases:
        got = proto._tensor_array(tensor.SerializeToString())
        want = numpy_helper.to_array(tensor)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_malformed_graph_and_missing_weights_are_corrupt_archive_errors():
    with ArchiveReader(ARCHIVES[-1]) as reader:
        graph, arrays = reader.codec.graph(), reader.codec.model_arrays("decoder")  # base + delta; graph stored or named
    with pytest.raises(CorruptArchiveError, match="malformed"):
        proto.attach_weights(graph[: len(graph) // 2], arrays)
    with pytest.raises(CorruptArchiveError, match="malformed"):
        proto.fold_dequantize(b"\x3a\xff\xff\xff\xff\x0f")  # a graph field longer than the bytes
    name = sorted(arrays)[0]
    with pytest.raises(CorruptArchiveError, match="weights missing"):
        proto.attach_weights(graph, {k: v for k, v in arrays.items() if k != name})


def test_damaged_graph_bytes_raise_only_corrupt_archive_errors():
    """Flipped bytes in a stored graph either still parse (ONNX Runtime judges the graph) or raise
    CorruptArchiveError; never another exception or a hang."""
    with ArchiveReader(ARCHIVES[0]) as reader:
        graph, arrays = reader.codec.graph(), reader.codec.model_arrays("decoder")  # base + delta; graph stored or named
    rng = np.random.default_rng(0)
    for _ in range(300):
        damaged = bytearray(graph)
        for at in rng.integers(0, len(damaged), int(rng.integers(1, 4))):
            damaged[at] = int(rng.integers(0, 256))
        try:
            proto.fold_dequantize(proto.attach_weights(bytes(damaged), arrays))
        except CorruptArchiveError:
            pass


@pytest.mark.parametrize("archive", ["v1-mixed.nca", "v3-pyramid-mixed.nca"])
def test_extract_in_a_fresh_process_imports_neither_onnx_nor_torch(archive, tmp_path):
    """``archiver extract`` (and the archiver.open path under it) loads no onnx, ml_dtypes or torch."""
    script = textwrap.dedent(
        """
        import atexit, json, sys
        heavy = ("onnx", "ml_dtypes", "torch")
        loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        atexit.register(lambda: print("MODULES " + json.dumps(loaded())))
        from archiver.cli import app
        app()
        """
    )
    cmd = [sys.executable, "-c", script, "extract", str(GOLDEN / archive), "-o", str(tmp_path / "out"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "images decoded" in proc.stdout
    line = next(line for line in proc.stdout.splitlines() if line.startswith("MODULES "))
    assert json.loads(line[len("MODULES ") :]) == []
