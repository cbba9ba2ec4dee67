import numpy as np
import pytest
import torch

from archiver.config import ModelConfig
from archiver.codecs.autoencoder.model import Autoencoder, pad_to_stride
from archiver.model.convergence import ConvergenceDetector
from archiver.codecs.autoencoder.inference import decode_latent, infer_latent, int8_decoder
from archiver.model.int8 import dequantize, quantize_weights
from archiver.model.prior import ChannelPrior

SMALL = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)


@pytest.mark.parametrize("h,w", [(16, 16), (17, 31), (33, 5), (64, 48)])
def test_any_size_round_trips_shape(h, w):
    model = Autoencoder(SMALL).eval()
    x = pad_to_stride(torch.rand(1, 3, h, w))
    y = model.encoder(x)
    assert y.shape == (1, 8, -(-h // 16), -(-w // 16))
    assert model.decoder(y).shape == x.shape


@pytest.mark.parametrize("upsample", ["nearest", "shuffle"])
def test_upsampling_starts_free_of_checkerboard(upsample):
    """At initialisation a constant latent must decode to an image without a 2-px periodic pattern."""
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(latent_channels=4, widths=(8, 8, 8, 8), res_blocks=0, upsample=upsample))
    out = model.decoder(torch.ones(1, 4, 4, 4))[0, :, 8:-8, 8:-8]
    even, odd = out[..., ::2, ::2], out[..., 1::2, ::2]
    assert torch.allclose(even.mean(), odd.mean(), atol=0.02)


def test_int8_quantization_is_per_channel_and_close():
    torch.manual_seed(0)
    decoder = Autoencoder(SMALL).decoder
    arrays = quantize_weights(decoder)
    for name, tensor in decoder.state_dict().items():
        if tensor.ndim == 4:
            q = arrays[name + ".q"]
            assert q.dtype == np.int8 and np.abs(q).max() == 127
            assert arrays[name + ".scale"].shape == (tensor.shape[0],)
            err = np.abs(dequantize(arrays)[name] - tensor.numpy()).max()
            assert err <= arrays[name + ".scale"].max() / 2 + 1e-7


def test_decode_latent_crops_and_is_uint8():
    torch.manual_seed(0)
    model = Autoencoder(SMALL).eval()
    decoder = int8_decoder(SMALL, quantize_weights(model.decoder))
    rgb = np.random.default_rng(0).integers(0, 256, (21, 35, 3), dtype=np.uint8)
    latent = infer_latent(model.encoder, decoder, ChannelPrior(8), rgb, 0.01)
    assert latent.dtype == np.int32 and latent.shape == (8, 2, 3)
    out = decode_latent(decoder, latent, 21, 35)
    assert out.shape == (21, 35, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, decode_latent(decoder, latent, 21, 35))


def test_refinement_lowers_the_rd_loss():
    torch.manual_seed(0)
    model = Autoencoder(SMALL).eval()
    decoder = int8_decoder(SMALL, quantize_weights(model.decoder))
    prior = ChannelPrior(8)
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def loss(latent):
        out = decode_latent(decoder, latent, 32, 32).astype(np.float64) / 255
        bits = prior.bits(torch.from_numpy(latent).float()[None]).sum().item()
        return 0.05 * 255**2 * np.mean((out - rgb / 255) ** 2) + bits / 1024

    plain = infer_latent(model.encoder, decoder, prior, rgb, 0.05, refine_steps=0)
    refined = infer_latent(model.encoder, decoder, prior, rgb, 0.05, refine_steps=30)
    assert loss(refined) < loss(plain)


def test_convergence_detects_flat_loss_and_stable_psnr():
    det = ConvergenceDetector(window=50, slope_tol=0.01, psnr_tol=0.05)
    for i in range(50):
        det.add_loss(10.0 - 0.1 * i)  # still falling fast
    assert not det.check(20.0).converged
    for _ in range(50):
        det.add_loss(5.0)
    assert not det.check(25.0).converged  # PSNR still moving
    for _ in range(50):
        det.add_loss(5.0)
    check = det.check(25.01)
    assert check.converged and abs(check.relative_improvement) < 1e-9


def test_convergence_needs_a_full_window():
    det = ConvergenceDetector(window=10, slope_tol=0.5, psnr_tol=1.0)
    det.add_loss(1.0)
    det.check(10.0)
    assert not det.check(10.0).converged


def test_tiled_encoding_matches_whole_image():
    """Large images are encoded in tiles with a halo: the latent is the whole image's (up to float
    summation order, so at most a rare ±1 after rounding)."""
    from archiver.codecs.autoencoder.inference import encode_tiled

    torch.manual_seed(0)  # two residual blocks: the widest receptive field the presets have
    encoder = Autoencoder(ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=2)).encoder.eval()
    x = torch.rand(1, 3, 320, 448)
    with torch.no_grad():
        whole = encoder(x)
    tiled = encode_tiled(encoder, x, tile=128, halo=128)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-4)
