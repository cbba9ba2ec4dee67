"""The autoencoder's training loss as one module (what DistributedDataParallel wraps under torchrun)."""

from __future__ import annotations

import torch
from torch import nn

from ...model.prior import ChannelPrior, add_uniform_noise, quantize_ste

__all__ = ["RateDistortion"]


class RateDistortion(nn.Module):
    """A codec model (encoder + decoder, ``model(x) -> (x_hat, y)``) + prior as one module whose
    forward is the training loss (what DDP wraps)."""

    def __init__(
        self, model: nn.Module, prior: ChannelPrior, lmbda: float, rate_weight: float = 1.0,
        perceptual: nn.Module | None = None, perceptual_weight: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.prior = prior
        self.lmbda = lmbda
        self.rate_weight = rate_weight
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight

    def forward(self, x: torch.Tensor):
        """(loss, mse, bpp, x_hat, rec) of a batch: loss = rec + w·(bits per pixel of the noisy latent)
        with the distortion ``rec = λ·255²·(MSE + perceptual_weight·P)``, P the optional perceptual
        distance (``--perceptual``). ``x_hat`` and ``rec`` feed the adversarial phase (``--gan``).

        With w = 0 the prior still learns (its loss is added with the latent detached), so that the
        archive's rate estimate stays meaningful, but the codec gets no pressure towards low rate.
        """
        y = self.model.encoder(x)
        noisy = add_uniform_noise(y)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = self.prior.bits(noisy).sum() / pixels
        x_hat = self.model.decoder(quantize_ste(y))
        mse = torch.mean((x_hat - x) ** 2)
        distortion = mse
        if self.perceptual is not None:
            distortion = mse + self.perceptual_weight * self.perceptual(x_hat, x)
        rec = self.lmbda * 255.0**2 * distortion
        rate = bpp if self.rate_weight == 1.0 else self.rate_weight * bpp
        if self.rate_weight == 0.0:
            rate = self.prior.bits(noisy.detach()).sum() / pixels
        return rec + rate, mse, bpp, x_hat, rec
