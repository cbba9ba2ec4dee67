"""Perceptual distances for ``--perceptual``: 1 − MS-SSIM, or LPIPS with user-supplied weights.

LPIPS needs a pretrained AlexNet and the LPIPS linear heads; nothing can be downloaded here, so the
user points ``--lpips-weights`` (or ``ARCHIVER_LPIPS_WEIGHTS``) at a folder holding the two files
published with torchvision and the ``lpips`` package: ``alexnet-*.pth`` (torchvision's ImageNet
AlexNet) and ``alex.pth`` (LPIPS v0.1 linear layers). The network is built here (no torchvision).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InputError

__all__ = ["PERCEPTUAL_CHOICES", "MS_SSIM_WEIGHTS", "MsSsimDistance", "Lpips", "load_lpips", "make_perceptual"]

PERCEPTUAL_CHOICES = ("none", "msssim", "lpips")

# LPIPS input normalisation (the lpips package's ScalingLayer), for images in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_ALEX_CHANNELS = (64, 192, 384, 256, 256)


#: MS-SSIM's per-scale exponents (Wang, Simoncelli & Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


class MsSsimDistance(nn.Module):
    """1 − MS-SSIM on [0, 1] images, with a 7-pixel Gaussian window (σ = 1.5). Crops too small for
    five scales (a side must exceed 6·2^(scales−1) pixels) use the finest scales that fit, with the
    exponents renormalised, so the term works on any training crop size."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", _gaussian_window())

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.window.to(x.dtype)
        x = nn.functional.conv2d(x, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return nn.functional.conv2d(x, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def _ssim_cs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1, c2 = 0.01**2, 0.03**2  # constants for data range 1
        mx, my = self._filter(x), self._filter(y)
        sxx = self._filter(x * x) - mx * mx
        syy = self._filter(y * y) - my * my
        sxy = self._filter(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
        return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        side = min(x.shape[-2:])
        win = self.window.numel()
        scales = next((k for k in range(len(MS_SSIM_WEIGHTS), 0, -1) if side > (win - 1) * 2 ** (k - 1)), 1)
        weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
        weights = weights / weights.sum()
        a, b = x_hat.clamp(0, 1), x
        factors = []
        for k in range(scales):
            ssim, cs = self._ssim_cs(a, b)
            factors.append(torch.relu(ssim if k == scales - 1 else cs))
            if k < scales - 1:
                a, b = nn.functional.avg_pool2d(a, 2), nn.functional.avg_pool2d(b, 2)
        vals = torch.stack(factors, dim=1)  # (N, scales)
        # Clamped away from 0 so that the power's gradient stays finite on hopeless crops.
        return 1 - torch.prod(vals.clamp_min(1e-6) ** weights, dim=1).mean()


class _AlexFeatures(nn.Module):
    """torchvision's AlexNet ``features`` (same parameter names), returning the five ReLU outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, out = {1, 4, 7, 9, 11}, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out


class Lpips(nn.Module):
    """LPIPS (v0.1, AlexNet): unit-normalised features at five depths, squared differences weighted
    by learned non-negative 1×1 heads, averaged over space, summed over depths."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _AlexFeatures()
        self.lins = nn.ModuleList(
            nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False)) for c in _ALEX_CHANNELS
        )  # the lpips package's NetLinLayer layout: its key names are lin{k}.model.1.weight
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        a = self.net(((x_hat * 2 - 1) - self.shift) / self.scale)
        b = self.net(((x * 2 - 1) - self.shift) / self.scale)
        total = x.new_zeros(())
        for fa, fb, lin in zip(a, b, self.lins):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fa - fb) ** 2).mean()
        return total

    def train(self, mode: bool = True) -> "Lpips":  # always frozen, always in eval mode (dropout off)
        return super().train(False)


def load_lpips(folder: Path | str | None) -> Lpips:
    """An :class:`Lpips` with the weights from ``folder`` (``alexnet-*.pth`` + ``alex.pth``)."""
    if not folder:
        raise InputError(
            "--perceptual lpips needs pretrained weights, which cannot be downloaded here: pass "
            "--lpips-weights DIR (or set ARCHIVER_LPIPS_WEIGHTS) to a folder with torchvision's "
            "alexnet-*.pth and the lpips package's alex.pth"
        )
    folder = Path(folder)
    backbone = sorted(folder.glob("alexnet*.pth")) if folder.is_dir() else []
    heads = folder / "alex.pth"
    if not backbone or not heads.is_file():
        raise InputError(f"{folder}: LPIPS weights folder must hold alexnet-*.pth and alex.pth")
    model = Lpips()
    try:
        net = torch.load(backbone[0], map_location="cpu", weights_only=True)
        lin = torch.load(heads, map_location="cpu", weights_only=True)
        model.net.load_state_dict({k: v for k, v in net.items() if k.startswith("features.")})
        model.lins.load_state_dict({k.replace("lin", "", 1).replace(".model.", ".", 1): v for k, v in lin.items()})
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise InputError(f"{folder}: LPIPS weights do not load: {exc}") from None
    return model


def make_perceptual(kind: str, lpips_weights: Path | str | None = None) -> nn.Module | None:
    """The distance module for ``--perceptual kind`` (None for ``none``)."""
    if kind == "none":
        return None
    if kind == "msssim":
        return MsSsimDistance()
    if kind == "lpips":
        return load_lpips(lpips_weights)
    raise InputError(f"--perceptual must be one of {', '.join(PERCEPTUAL_CHOICES)}, got {kind!r}")
