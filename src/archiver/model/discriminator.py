"""PatchGAN discriminator and hinge losses (the ResBlock paper's Algorithm 1). Pack-time only: the
discriminator is never stored in an archive."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchDiscriminator", "hinge_d_loss", "hinge_g_loss"]


class PatchDiscriminator(nn.Module):
    """4×4 convolutions 3→w→2w→4w→8w→1 (w = 64 in the paper), LeakyReLU(0.2), batch normalisation on
    every layer but the first and the last. Strides 2, 2, 2, 1, 1: each output judges one ~70×70 pixel
    patch (the pix2pix receptive field), so a 128×128 crop gives a 14×14 map of real/fake scores."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 2 if i < 3 else 1
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, stride, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(chans[4], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch scores (N, 1, h, w) of RGB images in [0, 1]; > 0 means "looks real"."""
        return self.net(x * 2 - 1)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 − D(x))) + mean(relu(1 + D(x̂)))."""
    return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator (decoder) side of the hinge GAN: −mean(D(x̂))."""
    return -fake.mean()
