"""ONNX Runtime decoding: equal to the torch decoder within 1, thread-independent, and torch-free."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from archiver.config import ModelConfig
from archiver.codecs.autoencoder.model import Autoencoder
from archiver.codecs.autoencoder.inference import decode_latent, int8_decoder
from archiver.model.int8 import quantize_weights
from archiver.codecs.autoencoder.graph import build_graph
from archiver.runtime.graph import attach_weights, graph_only
from archiver.runtime.session import OnnxDecoder, resolve_providers
from archiver.errors import InputError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v1-mixed.nca"


@pytest.mark.parametrize("upsample", ["nearest", "shuffle"])
def test_onnx_matches_torch_within_one(upsample):
    torch.manual_seed(0)
    cfg = ModelConfig(latent_channels=16, widths=(24, 16, 16, 8), upsample=upsample)
    arrays = quantize_weights(Autoencoder(cfg).decoder)
    latent = np.random.default_rng(0).integers(-4, 5, (16, 3, 5)).astype(np.int32)
    ref = decode_latent(int8_decoder(cfg, arrays), latent, 45, 77)
    model = attach_weights(graph_only(build_graph(cfg)), arrays)
    one, two = OnnxDecoder(model, "cpu", threads=1), OnnxDecoder(model, "cpu", threads=2)
    out = one.decode(latent, 45, 77)
    assert out.shape == (45, 77, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref).max() <= 1
    np.testing.assert_array_equal(out, two.decode(latent, 45, 77))


def test_graph_without_weights_is_small():
    assert len(graph_only(build_graph(ModelConfig()))) < 8_000


def test_batch_equals_single():
    torch.manual_seed(1)
    cfg = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)
    arrays = quantize_weights(Autoencoder(cfg).decoder)
    dec = OnnxDecoder(attach_weights(graph_only(build_graph(cfg)), arrays), "cpu")
    latents = np.random.default_rng(2).integers(-3, 4, (3, 8, 2, 2)).astype(np.int32)
    batch = dec.decode_batch(latents)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], dec.decode(latents[i], 32, 32))


def test_unknown_provider():
    with pytest.raises(InputError, match="--provider tpu: tpu is not available here"):
        resolve_providers("tpu")
    assert resolve_providers("auto")[-1] == "CPUExecutionProvider"


def test_extract_list_info_verify_without_torch(tmp_path):
    """A process in which `import torch` fails can still read and decode archives; pack says what to install."""
    script = textwrap.dedent(
        f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        from archiver.cli import app
        app()
        """
    )

    def run(*args):
        return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)

    for args in (["list", GOLDEN], ["info", GOLDEN, "--json"], ["verify", GOLDEN, "--decode"],
                 ["extract", GOLDEN, "-o", tmp_path / "out", "--quiet"]):  # fmt: skip
        proc = run(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "torch" not in proc.stderr
    assert (tmp_path / "out" / "rgb.png").is_file()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes((tmp_path / "out" / "rgb.png").read_bytes())
    proc = run("pack", tmp_path / "in", "-o", tmp_path / "a.nca")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: pack needs PyTorch: install the training extra")
    assert not (tmp_path / "a.nca").exists()


def test_tiled_decode_has_no_seams():
    """A latent larger than one tile decodes to the same pixels (±1) as in one piece, and the kept
    centre of every tile is what the whole-image decode gives."""
    from archiver.runtime import session

    torch.manual_seed(3)
    cfg = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=2)
    arrays = quantize_weights(Autoencoder(cfg).decoder)
    dec = OnnxDecoder(attach_weights(graph_only(build_graph(cfg)), arrays), "cpu")
    latent = np.random.default_rng(4).integers(-3, 4, (8, session.TILE + 9, session.TILE + 3)).astype(np.int32)
    h, w = latent.shape[1] * 16 - 5, latent.shape[2] * 16 - 7
    tiled = dec.decode(latent, h, w)
    whole = dec.decode_batch(latent[None])[0, :h, :w]
    assert tiled.shape == (h, w, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert (tiled != whole).mean() < 1e-3
