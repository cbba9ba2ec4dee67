"""The post-filter's ONNX graph computes what the torch module computes (within 1 in 8 bits)."""

import numpy as np
import torch

from archiver.model.denoiser import Denoiser, DenoiserConfig, worth_keeping
from archiver.model.int8 import load_quantized, quantize_weights
from archiver.runtime.denoiser_graph import build_denoiser_graph
from archiver.runtime.graph import attach_weights, graph_only
from archiver.runtime.session import OnnxDenoiser


def test_denoiser_graph_matches_torch():
    torch.manual_seed(0)
    net = Denoiser(DenoiserConfig(channels=8, blocks=2))
    with torch.no_grad():
        net.tail.weight.normal_(0, 0.05)  # not the identity it starts as
    arrays = quantize_weights(net)
    ref_net = load_quantized(Denoiser(DenoiserConfig(channels=8, blocks=2)), arrays).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        ref = torch.round(ref_net(x).clamp(0, 1) * 255).byte()[0].permute(1, 2, 0).numpy()
    onnx_model = attach_weights(graph_only(build_denoiser_graph(8, 2)), arrays)
    out = OnnxDenoiser(onnx_model, "cpu").apply(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert (out != rgb).any()


def test_identity_at_start():
    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    arrays = quantize_weights(Denoiser())
    out = OnnxDenoiser(attach_weights(graph_only(build_denoiser_graph(16, 2)), arrays), "cpu").apply(rgb)
    np.testing.assert_array_equal(out, rgb)


def test_worth_keeping_prices_bytes():
    assert worth_keeping(0.30, 10_000, 1_000_000)  # 1 % more bytes would buy ~0.09 dB
    assert not worth_keeping(0.05, 10_000, 1_000_000)
    assert not worth_keeping(0.5, 100_000, 100_000)  # doubling the archive would buy 6 dB
