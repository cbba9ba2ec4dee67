"""Image quality metrics on 8-bit arrays (numpy only)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mse", "psnr"]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error between two uint8 arrays of the same shape, in 8-bit units squared."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of 8-bit arrays (peak 255); identical arrays give +inf."""
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(255.0**2 / err)
