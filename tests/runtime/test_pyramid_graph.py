"""The pyramid synthesis as ONNX equals the torch synthesis with the same int8 weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from archiver.codec.pyramid_plan import PyramidSpec, pack_grids  # noqa: E402
from archiver.model import int8  # noqa: E402
from archiver.model.pyramid import PyramidCodec  # noqa: E402
from archiver.runtime.graph import attach_weights, graph_only  # noqa: E402
from archiver.runtime.pyramid_graph import build_pyramid_graph  # noqa: E402
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
