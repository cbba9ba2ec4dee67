import dataclasses
import math

import numpy as np
import pytest
import torch

from archiver.config import ModelConfig, TrainConfig, config_for_quality
from archiver.model.adversarial import ADAPTIVE_EPS, AdversarialPhase, last_layer_weight
from archiver.codecs.autoencoder.model import Autoencoder
from archiver.model.discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss
from archiver.codecs.autoencoder.training import train_codec
from conftest import smooth_image

SMALL = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)


def test_patch_discriminator_is_the_papers():
    """3→64→128→256→512→1, 4×4 kernels, a 14×14 map of patch scores for a 128×128 crop."""
    disc = PatchDiscriminator(64)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 64, (4, 4)), (64, 128, (4, 4)), (128, 256, (4, 4)), (256, 512, (4, 4)), (512, 1, (4, 4))
    ]  # fmt: skip
    norms = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [128, 256, 512]  # none after the first and the last conv
    assert disc(torch.rand(2, 3, 128, 128)).shape == (2, 1, 14, 14)


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # relu(1 - real) = [0, 0.5] → 0.25; relu(1 + fake) = [0, 1.5] → 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(1.0)
    assert hinge_g_loss(fake).item() == pytest.approx(0.75)


def _phase(**kw) -> tuple[AdversarialPhase, Autoencoder]:
    torch.manual_seed(0)
    model = Autoencoder(SMALL)
    tc = TrainConfig(gan=True, disc_width=8, **kw)
    return AdversarialPhase(tc, last_layer_weight(model.decoder), torch.device("cpu")), model


def test_adaptive_weight_balances_the_gradients():
    phase, model = _phase(gan_weight=1.0)
    x = torch.rand(2, 3, 32, 32)
    x_hat = model.decoder(model.encoder(x))
    rec = ((x_hat - x) ** 2).mean() * 100
    g_term = phase.generator_loss(x_hat, rec)
    last = last_layer_weight(model.decoder)
    grad_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    grad_term = torch.autograd.grad(g_term, last, retain_graph=True)[0]
    # w·∇L_G has the norm of ∇L_rec: the GAN pushes exactly as hard as the reconstruction pulls.
    assert grad_term.norm().item() == pytest.approx(grad_rec.norm().item(), rel=1e-4)
    assert 0 < phase.last_weight <= 1e4


def test_adaptive_weight_is_clamped():
    phase, model = _phase()
    x_hat = model.decoder(torch.zeros(1, 8, 2, 2))
    rec = x_hat.sum() * 1e9  # a huge reconstruction gradient
    phase.generator_loss(x_hat, rec)
    assert phase.last_weight == 1e4
    assert ADAPTIVE_EPS > 0


def test_start_schedule():
    phase, _ = _phase()
    assert not phase.due(500, converged=False, time_used=0.2)
    assert phase.due(500, converged=True, time_used=0.2)
    assert phase.due(500, converged=False, time_used=0.5)  # a time-capped pack still gets its phase
    fixed, _ = _phase(gan_start=1000)
    assert not fixed.due(500, converged=True, time_used=0.9) and fixed.due(1000, converged=False, time_used=0.0)


def test_mode_collapse_guard_restores_the_last_good_state():
    phase, _ = _phase(gan_margin_db=1.0)
    phase.start(100, 30.0, {"w": torch.zeros(1)})
    assert phase.guard(200, 29.5, {"w": torch.ones(1)}) is None  # within the margin: new good state
    back = phase.guard(300, 28.0, {"w": torch.full((1,), 2.0)})  # 2 dB below the start
    assert torch.equal(back["w"], torch.ones(1))
    assert phase.fell_back_at == 300 and not phase.active and phase.finished
    assert not phase.due(400, converged=True, time_used=1.0)  # the phase does not come back


def _images():
    rng = np.random.default_rng(0)
    return [smooth_image(rng, 48, 40) for _ in range(3)]


def _cfg(**train):
    cfg = config_for_quality(5, time_limit=600, max_steps=40, check_every=10, batch=2, crop=32, gan=True, **train)
    return dataclasses.replace(cfg, model=SMALL, train=dataclasses.replace(cfg.train, disc_width=8))


def test_training_with_gan_runs_the_adversarial_phase():
    result = train_codec(_images(), _cfg(gan_start=10, perceptual="msssim"))
    g = result.gan
    assert g["start_step"] == 10 and g["disc_steps"] == 30 and g["fell_back_at"] is None
    assert g["perceptual"] == "msssim" and math.isfinite(g["last_adaptive_weight"])
    assert result.summary()["gan"] == g
    assert any(h.get("gan_started") for h in result.history)


def test_training_with_gan_falls_back_on_collapse():
    # A negative margin counts any PSNR as a collapse: the first check of the phase must fall back.
    result = train_codec(_images(), _cfg(gan_start=10, gan_margin_db=-100.0))
    assert result.gan["fell_back_at"] == 20 and result.gan["disc_steps"] == 10
    assert [h["step"] for h in result.history if h.get("gan_fell_back")] == [20]


def test_without_gan_no_record():
    cfg = dataclasses.replace(_cfg(), train=dataclasses.replace(_cfg().train, gan=False, max_steps=5))
    assert "gan" not in train_codec(_images(), cfg).summary()


def test_resume_with_gan_continues_exactly(tmp_path):
    from archiver.model.checkpoint import Checkpointer

    class Crash(Exception):
        pass

    cfg = _cfg(gan_start=10)
    whole = train_codec(_images(), cfg)

    def crash_at_25(p):
        if p.step == 25:
            raise Crash

    with pytest.raises(Crash):
        train_codec(_images(), cfg, progress=crash_at_25, report_every=1, checkpointer=Checkpointer(tmp_path, "x", every=0.0))
    resumed = train_codec(_images(), cfg, checkpointer=Checkpointer(tmp_path, "x", every=1e9))
    assert resumed.gan == whole.gan
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
