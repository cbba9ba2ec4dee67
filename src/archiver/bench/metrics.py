"""Distortion metrics and rate–distortion curve comparisons for the benchmark.

* ``psnr``  -- PSNR in dB of two uint8 RGB arrays (peak 255), ``inf`` when identical.
* ``ms_ssim`` -- MS-SSIM via pytorch_msssim (data_range=255, 11-tap Gaussian window, sigma 1.5).
  pytorch_msssim needs the short side > 160 px for its 5 scales (and asserts on that even if
  fewer weights are passed). For smaller images we compute MS-SSIM with **fewer scales**: the
  largest k <= 5 with short side > 10 * 2**(k-1) (k=4 for 128 px crops, k=2 for 32 px thumbnails,
  k=1 is plain SSIM), using the first k standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
  renormalised to sum 1, and the same per-scale computation as pytorch_msssim (its ``_ssim``).
  Images with a short side below 11 px give NaN. Values from different scale counts are not
  comparable with each other: compare codecs on the same image set only.
* ``bd_rate`` -- Bjøntegaard delta rate (percent) of curve A relative to curve B.
* ``rate_at_quality`` -- the rate a curve needs to reach a target quality.

Curve handling (both curve functions): points with a non-finite or non-positive rate or a
non-finite quality are dropped, then only the Pareto front is kept (sorted by rate, each kept
point has strictly higher quality than all cheaper ones), so the interpolated function
log(rate) = f(quality) is defined on strictly increasing qualities. Interpolation is monotone
piecewise cubic (scipy ``PchipInterpolator``) in natural-log rate. Rates can be in any unit
(bits per pixel, bytes) as long as both curves use the same one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "PSNR_CAP_DB", "MSSSIM_WEIGHTS", "bd_rate", "mean_psnr", "ms_ssim", "msssim_scales", "psnr", "rate_at_quality",
]

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first
_WIN = 11  # Gaussian window side, pixels
_SIGMA = 1.5  # Gaussian window sigma, pixels


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C) arrays, got shape {a.shape}")


#: Per-image PSNR is capped at this many dB before averaging: a tiny image that a codec happens to
#: reproduce exactly has infinite PSNR, which would make the whole mean infinite (it did, on the
#: ``tiny`` regime). 60 dB is an MSE of 0.065 in 8-bit units: visually and numerically lossless.
PSNR_CAP_DB = 60.0


def mean_psnr(values) -> float | None:
    """Mean of per-image PSNRs (dB), each capped at :data:`PSNR_CAP_DB`; NaNs ignored."""
    vals = [min(float(v), PSNR_CAP_DB) for v in values if not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (peak 255); +inf if identical."""
    _check_pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))  # squared 8-bit levels
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def msssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales (0..5) usable for an image of this size in pixels (0 = undefined)."""
    side = min(height, width)
    k = 0
    while k < len(MSSSIM_WEIGHTS) and side > (_WIN - 1) * 2**k:
        k += 1
    return k


def _to_tensor(x: np.ndarray):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t.unsqueeze(-1) if t.ndim == 2 else t
    return t.permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W), 0..255


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8 images (data_range 255), with fewer scales below 161 px (see module doc)."""
    _check_pair(a, b)
    k = msssim_scales(a.shape[0], a.shape[1])
    if k == 0:
        return math.nan
    import torch
    import torch.nn.functional as F
    import pytorch_msssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    x, y = _to_tensor(a), _to_tensor(b)
    with torch.no_grad():
        if k == len(MSSSIM_WEIGHTS):
            return float(pytorch_msssim.ms_ssim(x, y, data_range=255, win_size=_WIN, win_sigma=_SIGMA))
        weights = torch.tensor(MSSSIM_WEIGHTS[:k], dtype=torch.float32)
        weights = weights / weights.sum()
        win = _fspecial_gauss_1d(_WIN, _SIGMA).repeat([x.shape[1], 1, 1, 1])
        terms = []
        for level in range(k):  # same recursion as pytorch_msssim.ms_ssim
            ssim_pc, cs = _ssim(x, y, data_range=255, win=win, size_average=False, K=(0.01, 0.03))
            if level < k - 1:
                terms.append(torch.relu(cs))
                pad = [s % 2 for s in x.shape[2:]]
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        terms.append(torch.relu(ssim_pc))
        stacked = torch.stack(terms, dim=0)  # (scale, batch, channel)
        value = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean()
    return float(value)


def _front(rates: Sequence[float], dists: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pareto front as (log rates, qualities), qualities strictly increasing."""
    r = np.asarray(rates, dtype=np.float64).ravel()
    d = np.asarray(dists, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise ValueError(f"rates and distortions differ in length: {r.size} vs {d.size}")
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0)
    r, d = r[ok], d[ok]
    order = np.lexsort((-d, r))  # by rate, best quality first among equal rates
    keep_r, keep_d = [], []
    for i in order:
        if not keep_d or d[i] > keep_d[-1]:
            keep_r.append(r[i])
            keep_d.append(d[i])
    return np.log(np.asarray(keep_r)), np.asarray(keep_d)


def _interp(log_r: np.ndarray, d: np.ndarray):
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(d, log_r, extrapolate=False)


def bd_rate(
    rate_a: Sequence[float],
    dist_a: Sequence[float],
    rate_b: Sequence[float],
    dist_b: Sequence[float],
) -> float | None:
    """Bjøntegaard delta rate of A relative to B, in percent (negative: A needs fewer bits).

    ``dist_*`` are qualities where higher is better (PSNR dB, MS-SSIM). log(rate) is interpolated
    as a function of quality on each curve (pchip), both are integrated over the overlapping
    quality interval, and the mean log-rate difference d gives ``100 * (exp(d) - 1)``.
    Returns None when a curve has fewer than 2 usable points or the quality ranges do not overlap.
    """
    la, da = _front(rate_a, dist_a)
    lb, db = _front(rate_b, dist_b)
    if da.size < 2 or db.size < 2:
        return None
    lo, hi = max(da[0], db[0]), min(da[-1], db[-1])
    if not hi > lo:
        return None
    fa, fb = _interp(la, da), _interp(lb, db)
    mean_diff = (fa.integrate(lo, hi) - fb.integrate(lo, hi)) / (hi - lo)  # natural-log units
    return float(100.0 * math.expm1(mean_diff))


def rate_at_quality(rates: Sequence[float], dists: Sequence[float], target: float) -> float | None:
    """Rate (same unit as ``rates``, e.g. bpp) at which the curve reaches quality ``target``.

    Interpolates log(rate) over quality with pchip on the Pareto front; None if ``target`` lies
    outside the curve's quality range or the curve has no usable point.
    """
    lr, d = _front(rates, dists)
    if d.size == 0 or not (d[0] <= target <= d[-1]):
        return None
    if d.size == 1:
        return float(math.exp(lr[0]))
    return float(math.exp(_interp(lr, d)(target)))
