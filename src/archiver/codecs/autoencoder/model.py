"""Fully convolutional residual autoencoder with a spatial latent at 1/16 resolution."""

from __future__ import annotations

import torch
from torch import nn

from .architecture import LEAKY_SLOPE, decoder_plan
from ...codec.geometry import STRIDE, padded_size
from ...config import ModelConfig
from .blocks import Downsample, ResBlock, conv3, make_upsample

__all__ = ["Encoder", "Decoder", "Autoencoder", "pad_to_stride"]


def pad_to_stride(x: torch.Tensor, stride: int = STRIDE, min_size: int = 0) -> torch.Tensor:
    """Replicate-pad an NCHW batch on the bottom/right to :func:`padded_size`."""
    h, w = x.shape[-2:]
    th, tw = padded_size(h, w, min_size, stride)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x
    return nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")


class Encoder(nn.Module):
    """Analysis transform: RGB in [0, 1] → real-valued latent (N, C, H/16, W/16). Used only at pack time."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w16, w8, w4, w2 = cfg.widths
        layers: list[nn.Module] = [Downsample(3, w2), nn.LeakyReLU(LEAKY_SLOPE)]
        layers += [Downsample(w2, w4), nn.LeakyReLU(LEAKY_SLOPE)]
        layers += [Downsample(w4, w8), nn.LeakyReLU(LEAKY_SLOPE)]
        if cfg.res_blocks >= 2:
            layers.append(ResBlock(w8, cfg.residual))
        layers += [Downsample(w8, w16), nn.LeakyReLU(LEAKY_SLOPE)]
        if cfg.res_blocks >= 1:
            layers.append(ResBlock(w16, cfg.residual))
        layers.append(conv3(w16, cfg.latent_channels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


class Decoder(nn.Module):
    """Synthesis transform: integer latent (as float) → RGB in [0, 1]. The only network in the archive."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for layer in decoder_plan(cfg):
            if layer.kind == "conv":
                layers.append(conv3(layer.cin, layer.cout))
            elif layer.kind == "act":
                layers.append(nn.LeakyReLU(LEAKY_SLOPE))
            elif layer.kind == "res":
                layers.append(ResBlock(layer.cin, layer.residual))
            else:
                layers.append(make_upsample(layer.mode, layer.cin, layer.cout))
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y) + 0.5


class Autoencoder(nn.Module):
    """Encoder + decoder pair; the rate side (prior) lives in :mod:`archiver.model.prior`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
