"""Pieces of every codec's training loop: the device, random training crops and progress reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

__all__ = ["TrainProgress", "resolve_device", "CropSampler"]


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: step, last loss, PSNR (dB) and estimated bpp of the batch, seconds."""

    step: int
    loss: float
    psnr: float
    bpp: float
    elapsed: float
    remaining: float
    lr: float


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


class CropSampler:
    """Random square crops, images drawn in proportion to their pixel counts; small images edge-padded.
    With ``flip`` half of the crops (drawn from the same generator) are mirrored left–right."""

    def __init__(self, images: list[np.ndarray], crop: int, rng: np.random.Generator, flip: bool = False) -> None:
        self.images = images
        self.crop = crop
        self.rng = rng
        self.flip = flip
        sizes = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def crop_one(self, im: np.ndarray) -> np.ndarray:
        c = self.crop
        h, w = im.shape[:2]
        if h < c or w < c:
            im = np.pad(im, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="edge")
            h, w = im.shape[:2]
        y = int(self.rng.integers(0, h - c + 1))
        x = int(self.rng.integers(0, w - c + 1))
        out = im[y : y + c, x : x + c]
        return out[:, ::-1] if self.flip and self.rng.integers(0, 2) else out

    def batch(self, n: int) -> torch.Tensor:
        """(n, 3, crop, crop) float32 batch in [0, 1]."""
        idx = self.rng.choice(len(self.images), size=n, p=self.weights)
        crops = np.stack([self.crop_one(self.images[i]) for i in idx])
        return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
