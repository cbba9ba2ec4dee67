"""Building blocks of the residual convolutional autoencoder."""

from __future__ import annotations

import torch
from torch import nn

from .architecture import LEAKY_SLOPE

__all__ = ["conv3", "ResBlock", "Downsample", "Upsample", "NearestUpsample", "make_upsample"]


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with 'same' padding (and ``stride``)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv3 → LeakyReLU → conv3, added to the input when ``residual`` (ResNet v1 without norm).

    Normalisation layers are left out on purpose: they would have to be folded before int8 export and
    batch statistics of a single collection add nothing.
    """

    def __init__(self, channels: int, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3(channels, channels)
        self.conv2 = conv3(channels, channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act(self.conv1(x)))
        return self.act(x + out) if self.residual else self.act(out)


class Downsample(nn.Module):
    """Strided 5×5 convolution halving each side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """×2 upsampling by sub-pixel convolution (conv3 to 4·cout channels, then PixelShuffle).

    The convolution is initialised ICNR-style (the four sub-pixel filters start identical), which
    makes the initial output a nearest-neighbour upsampling and avoids checkerboard artefacts.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3(cin, cout * 4)
        self.shuffle = nn.PixelShuffle(2)
        self._icnr(cout)

    def _icnr(self, cout: int) -> None:
        with torch.no_grad():
            base = torch.empty(cout, self.conv.in_channels, 3, 3)
            nn.init.kaiming_uniform_(base, a=LEAKY_SLOPE)
            # PixelShuffle takes output channel c*4 + k to sub-pixel k of channel c.
            self.conv.weight.copy_(base.repeat_interleave(4, dim=0))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class NearestUpsample(nn.Module):
    """×2 nearest-neighbour upsampling followed by conv3: checkerboard-free with 4× fewer weights than
    :class:`Upsample` at the same multiply–accumulates per output pixel."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


def make_upsample(kind: str, cin: int, cout: int) -> nn.Module:
    """``"nearest"`` → :class:`NearestUpsample`, ``"shuffle"`` → :class:`Upsample` (sub-pixel conv)."""
    if kind == "nearest":
        return NearestUpsample(cin, cout)
    if kind == "shuffle":
        return Upsample(cin, cout)
    raise ValueError(f"unknown upsampling {kind!r}")
