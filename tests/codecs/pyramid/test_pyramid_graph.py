"""The pyramid synthesis as ONNX equals the torch synthesis with the same int8 weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from archiver.codecs.pyramid.plan import PyramidSpec, pack_grids  # noqa: E402
from archiver.model import int8  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec  # noqa: E402
from archiver.runtime.graph import attach_weights, graph_only  # noqa: E402
from archiver.codecs.pyramid.graph import build_pyramid_graph  # noqa: E402
from archiver.runtime.session import _session  # noqa: E402


@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_onnx_matches_torch(size):
    torch.manual_seed(0)
    spec = PyramidSpec(channels=(1, 1, 1, 1, 1, 1))
    codec = PyramidCodec(spec)
    with torch.no_grad():
        codec.log_steps[3] = torch.linspace(-0.5, 0.5, spec.levels)
    arrays = int8.quantize_weights(codec.synthesis)
    int8.load_quantized(codec.synthesis, arrays)
    steps = codec.steps(4).detach().numpy().astype(np.float32)
    arrays["quant.steps"] = steps
    model = attach_weights(graph_only(build_pyramid_graph(spec)), arrays)
    session = _session(model, ["CPUExecutionProvider"], 1)
    h, w = size
    rng = np.random.default_rng(1)
    grids = [rng.integers(-6, 7, (2, 1, h >> l, w >> l)).astype(np.float32) for l in range(spec.levels)]
    packed = np.stack([pack_grids(spec, [g[n] for g in grids]) for n in range(2)])
    out = session.run(["rgb"], {"latent": packed})[0]
    with torch.no_grad():
        ref = codec.synthesis([torch.from_numpy(g) * float(steps[l]) for l, g in enumerate(grids)])
    ref = torch.round(ref.clamp(0, 1) * 255).numpy().astype(np.int16)
    assert out.shape == (2, 3, h, w) and out.dtype == np.uint8
    assert np.abs(out.astype(np.int16) - ref).max() <= 1


def test_tiled_synthesis_decodes_as_one_piece():
    """The pyramid's runtime tiles keep enough context (64 px: one cell of the 1/32 grid plus the
    3×3 layers) that a tiled image decodes to the pixels of one piece, ±1 where float sums round
    apart (none did here, nor on a 48-photo album; without context 6 % of the pixels differ)."""
    from archiver.codecs.pyramid.read import pyramid_tiling
    from archiver.runtime.session import OnnxDecoder

    torch.manual_seed(5)
    spec = PyramidSpec(channels=(1, 1, 1, 1, 1, 1))
    arrays = int8.quantize_weights(PyramidCodec(spec).synthesis)
    arrays["quant.steps"] = np.full(spec.levels, 0.3, np.float32)
    model = attach_weights(graph_only(build_pyramid_graph(spec)), arrays)
    h, w = 1120 // spec.stride, 704 // spec.stride  # 3 × 2 tiles of 512 px
    latent = np.random.default_rng(6).integers(-4, 5, (spec.packed_channels, h, w)).astype(np.int32)
    whole = OnnxDecoder(model, "cpu", 1, spec.stride, 10**6, 0).decode(latent, 1100, 690)
    tiled = OnnxDecoder(model, "cpu", 1, spec.stride, *pyramid_tiling(spec.stride)).decode(latent, 1100, 690)
    assert tiled.shape == whole.shape == (1100, 690, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1 and (tiled != whole).mean() < 1e-3


def test_synthesis_runtime_follows_the_codec_version():
    """Versions 1–4 decode with ONNX Runtime's layout optimizations (their pixel checks were made so),
    version 5 without; both compute the same function to ±1 per channel."""
    import onnxruntime as ort

    from archiver.codecs.pyramid.read import synthesis_runtime

    torch.manual_seed(7)
    spec = PyramidSpec(channels=(1, 1, 1, 1, 1, 1))
    arrays = int8.quantize_weights(PyramidCodec(spec).synthesis)
    arrays["quant.steps"] = np.full(spec.levels, 0.3, np.float32)
    model = attach_weights(graph_only(build_pyramid_graph(spec)), arrays)
    latent = np.random.default_rng(8).integers(-4, 5, (spec.packed_channels, 8, 8)).astype(np.int32)
    levels = {}
    pixels = {}
    for version in (4, 5):
        runtime = synthesis_runtime(model, spec.stride, version)
        levels[version] = runtime.session.get_session_options().graph_optimization_level
        pixels[version] = runtime.decode(latent, 250, 256).astype(int)
    assert levels == {4: ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 5: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    assert pixels[4].shape == (250, 256, 3) and np.abs(pixels[4] - pixels[5]).max() <= 1
