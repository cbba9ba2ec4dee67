"""Warm start: shipped weights match their presets, load exactly, help, and are recorded by pack."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from archiver.config import MODEL_PRESETS, ModelConfig, config_for_quality
from archiver.codecs.autoencoder.model import Autoencoder
from archiver.codecs.autoencoder.inference import to_tensor
from archiver.model.prior import ChannelPrior
from archiver.codecs.autoencoder.training import train_codec
from archiver.codecs.autoencoder.warmstart import WEIGHTS_DIR, find_warm_start, save_warm_start
from conftest import smooth_image

TINY = MODEL_PRESETS["tiny"]
#: The autoencoder's warm starts (the pyramid's bases, pyramid-*.npz, are tested in tests/codec/test_bases.py).
SHIPPED = sorted(p for p in WEIGHTS_DIR.glob("*.npz") if not p.stem.startswith("pyramid-"))


def _psnr(model: Autoencoder, image: np.ndarray) -> float:
    x = to_tensor(image)
    with torch.no_grad():
        x_hat = model.decoder(torch.round(model.encoder(x))).clamp(0, 1)
    mse = torch.mean((x_hat - x) ** 2).item()
    return 10 * np.log10(1.0 / max(mse, 1e-10))


def test_round_trip_finds_only_the_same_config(tmp_path):
    torch.manual_seed(1)
    model, prior = Autoencoder(TINY), ChannelPrior(TINY.latent_channels)
    size = save_warm_start(tmp_path / "tiny.npz", model, prior, TINY, {"steps": 3})
    assert size == (tmp_path / "tiny.npz").stat().st_size
    assert find_warm_start(dataclasses.replace(TINY, res_blocks=2), tmp_path) is None
    found = find_warm_start(TINY, tmp_path)
    assert found is not None and found.name == "tiny" and found.meta["trained"] == {"steps": 3}
    torch.manual_seed(2)
    fresh, fresh_prior = Autoencoder(TINY), ChannelPrior(TINY.latent_channels)
    found.load_into(fresh, fresh_prior)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b)  # stored as float16
    torch.testing.assert_close(prior.log_scale.half().float(), fresh_prior.log_scale)
    assert found.summary()["sha256"] == __import__("hashlib").sha256((tmp_path / "tiny.npz").read_bytes()).hexdigest()


def test_shipped_weights_exist_are_small_and_fit_their_preset():
    assert SHIPPED, f"no warm-start weights in {WEIGHTS_DIR}"
    assert (WEIGHTS_DIR / "README.md").is_file() and (WEIGHTS_DIR / "CREDITS.csv").is_file()
    for path in SHIPPED:
        assert path.stat().st_size < 1_000_000  # bytes: the package stays light
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
        assert ModelConfig.from_dict(meta["model"]) == MODEL_PRESETS[path.stem]
        found = find_warm_start(MODEL_PRESETS[path.stem])
        assert found is not None and found.path == path
        found.load_into(Autoencoder(MODEL_PRESETS[path.stem]), ChannelPrior(MODEL_PRESETS[path.stem].latent_channels))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_codec_already_codes_an_unseen_image(path):
    """Pretrained weights reconstruct a synthetic image far better than the random start they replace."""
    cfg = MODEL_PRESETS[path.stem]
    image = smooth_image(np.random.default_rng(5), 128, 96)
    torch.manual_seed(0)
    model = Autoencoder(cfg).eval()
    random_psnr = _psnr(model, image)
    find_warm_start(cfg).load_into(model, ChannelPrior(cfg.latent_channels))
    warm_psnr = _psnr(model, image)
    assert warm_psnr > 20.0 and warm_psnr > random_psnr + 5.0, (random_psnr, warm_psnr)  # measured 14.3 → 22.1 dB


@pytest.mark.parametrize("warm", [True, False])
def test_training_records_its_starting_point(warm):
    images = [smooth_image(np.random.default_rng(i), 64, 64) for i in range(2)]
    cfg = config_for_quality(4, time_limit=60, model_size="tiny", max_steps=2, warm_start=warm, device="cpu")
    cfg = dataclasses.replace(cfg, model=TINY)
    result = train_codec(images, cfg)
    if warm:
        assert result.warm_start["name"] == "tiny" and len(result.warm_start["sha256"]) == 64
        assert result.summary()["warm_start"] == result.warm_start
    else:
        assert result.warm_start is None and result.summary()["warm_start"] is None


@pytest.mark.parametrize("flag", ["--warm-start", "--no-warm-start"])
def test_pack_says_where_training_started(tmp_path, flag):
    import json

    from typer.testing import CliRunner

    from archiver.cli import app
    from conftest import write_images

    runner = CliRunner()
    src = write_images(tmp_path / "src", 3, 48, 40)
    archive = tmp_path / "a.nca"
    result = runner.invoke(app, ["pack", str(src), "-o", str(archive), "--max-steps", "5", "--refine", "0", "--codec", "autoencoder", "--quiet", flag])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(app, ["info", str(archive), "--json"]).output)
    if flag == "--warm-start":
        assert "warm start: tiny" in result.output and info["warm_start"] == "tiny"
    else:
        assert "warm start" not in result.output and info["warm_start"] is None
    assert info["config"]["train"]["warm_start"] is (flag == "--warm-start")
