"""The adversarial phase of ``pack --gan``: discriminator updates, the adaptive GAN weight and the
mode-collapse guard (the ResBlock paper's Algorithm 1, on top of the rate–distortion loss).

The phase starts when the codec first converges or half the time limit is used (or at
``TrainConfig.gan_start`` steps), so the discriminator meets a decoder that already reconstructs; from then on every step adds
``gan_weight · w · L_G`` to the codec's loss, with the adaptive weight
``w = ‖∇L_rec‖ / max(‖∇L_G‖, ε)`` taken on the decoder's last layer and clamped to [0, 1e4], and then
updates the discriminator with the hinge loss. If the held-back PSNR falls more than
``gan_margin_db`` below its value when the phase started, the codec goes back to the last checkpoint
that was within the margin and the phase ends (recorded as ``fell_back``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..config import TrainConfig
from .discriminator import PatchDiscriminator, hinge_d_loss, hinge_g_loss

__all__ = ["AdversarialPhase", "ADAPTIVE_EPS", "ADAPTIVE_MAX", "last_layer_weight"]

#: ε and the clamp of the adaptive weight (Algorithm 1).
ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


def last_layer_weight(decoder: nn.Module) -> nn.Parameter:
    """Weight of the decoder's last convolution: where the adaptive weight compares the gradients."""
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].weight


class AdversarialPhase:
    """Discriminator and bookkeeping of one pack's adversarial phase (pack-time only, never stored)."""

    def __init__(self, tc: TrainConfig, last_layer: nn.Parameter, device: torch.device, distributed: bool = False) -> None:
        self.tc = tc
        self.last_layer = last_layer
        self.disc = PatchDiscriminator(tc.disc_width).to(device)
        # Under torchrun the discriminator's updates are averaged like the codec's.
        self._disc_step = nn.parallel.DistributedDataParallel(self.disc) if distributed else self.disc
        self.optimizer = torch.optim.Adam(self.disc.parameters(), lr=tc.lr, betas=(0.5, 0.9))
        self.active = False
        self.finished = False
        self.start_step: int | None = None
        self.psnr_at_start = math.nan
        self.fell_back_at: int | None = None
        self.disc_steps = 0
        self.last_weight = math.nan
        self.last_d_loss = math.nan
        self._good: dict | None = None

    # -- schedule --------------------------------------------------------------------------------
    def due(self, step: int, converged: bool, time_used: float) -> bool:
        """Whether the phase starts at this convergence check: at or after ``gan_start`` steps, or
        (``gan_start`` 0) at the codec's first convergence or once half the time limit is used
        (``time_used`` is the fraction used), so that a time-capped pack still gets its GAN phase."""
        if self.active or self.finished:
            return False
        if self.tc.gan_start > 0:
            return step >= self.tc.gan_start
        return converged or time_used >= 0.5

    def start(self, step: int, heldout_psnr: float, codec_state: dict) -> None:
        self.active, self.start_step, self.psnr_at_start = True, step, heldout_psnr
        self._good = copy.deepcopy(codec_state)

    def guard(self, step: int, heldout_psnr: float, codec_state: dict) -> dict | None:
        """Mode-collapse guard, at every convergence check of the phase. Returns the codec state to
        restore if the held-back PSNR fell more than the margin (the phase then ends), else None."""
        if not self.active:
            return None
        if heldout_psnr < self.psnr_at_start - self.tc.gan_margin_db:
            self.active, self.finished, self.fell_back_at = False, True, step
            return self._good
        self._good = copy.deepcopy(codec_state)
        return None

    # -- losses ----------------------------------------------------------------------------------
    def generator_loss(self, x_hat: torch.Tensor, rec_loss: torch.Tensor) -> torch.Tensor:
        """``gan_weight · w · L_G`` for the codec's loss (w detached: it only scales)."""
        g = hinge_g_loss(self.disc(x_hat))
        grad_rec = torch.autograd.grad(rec_loss, self.last_layer, retain_graph=True)[0]
        grad_g = torch.autograd.grad(g, self.last_layer, retain_graph=True)[0]
        w = (grad_rec.norm() / grad_g.norm().clamp_min(ADAPTIVE_EPS)).clamp(0.0, ADAPTIVE_MAX).detach()
        self.last_weight = float(w)
        return self.tc.gan_weight * w * g

    def discriminator_step(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """One hinge-loss update of the discriminator on real crops and the codec's reconstructions."""
        scores = self._disc_step(torch.cat([x, x_hat.detach()]))
        real, fake = scores.chunk(2)
        loss = hinge_d_loss(real, fake)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.disc_steps += 1
        self.last_d_loss = float(loss.item())

    # -- resume and report -----------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "disc": self.disc.state_dict(), "optimizer": self.optimizer.state_dict(), "active": self.active,
            "finished": self.finished, "start_step": self.start_step, "psnr_at_start": self.psnr_at_start,
            "fell_back_at": self.fell_back_at, "disc_steps": self.disc_steps, "good": self._good,
        }  # fmt: skip

    def restore(self, saved: dict) -> None:
        self.disc.load_state_dict(saved["disc"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.active, self.finished = saved["active"], saved["finished"]
        self.start_step, self.psnr_at_start = saved["start_step"], saved["psnr_at_start"]
        self.fell_back_at, self.disc_steps, self._good = saved["fell_back_at"], saved["disc_steps"], saved["good"]

    def summary(self) -> dict:
        """JSON-able record for the archive's ``training.gan``."""
        return {
            "perceptual": self.tc.perceptual, "gan_weight": self.tc.gan_weight, "disc_width": self.tc.disc_width,
            "start_step": self.start_step, "psnr_at_start": None if math.isnan(self.psnr_at_start) else round(self.psnr_at_start, 4),
            "disc_steps": self.disc_steps, "fell_back_at": self.fell_back_at,
            "last_adaptive_weight": None if math.isnan(self.last_weight) else self.last_weight,
            "last_disc_loss": None if math.isnan(self.last_d_loss) else self.last_d_loss,
        }  # fmt: skip
