"""The optional post-filter (a post-filter on the decoded pixels): a few residual blocks with channel attention.

It maps the decoder's 8-bit output to a corrected image (``x + f(x)``) and is trained on the
collection's own (reconstruction, original) pairs after the codec has converged. Pack keeps it only if
it earns its bytes (see :func:`worth_keeping`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import LEAKY_SLOPE
from .convergence import ConvergenceDetector

__all__ = ["DenoiserConfig", "Denoiser", "train_denoiser", "worth_keeping", "DB_PER_DOUBLING"]

#: PSNR a codec gains per doubling of its rate, in dB (the 6.02 dB-per-bit rule): the exchange rate
#: used to price the denoiser's bytes.
DB_PER_DOUBLING = 6.02


@dataclass(frozen=True)
class DenoiserConfig:
    """Width ``channels`` and number of attention blocks ``blocks`` (about 10 k weights by default)."""

    channels: int = 16
    blocks: int = 2


class _AttentionBlock(nn.Module):
    """conv3 → LeakyReLU → conv3, scaled per channel by squeeze-and-excitation, added to the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.squeeze = nn.Conv2d(c, max(4, c // 4), 1)
        self.excite = nn.Conv2d(max(4, c // 4), c, 1)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        w = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean(dim=(2, 3), keepdim=True)))))
        return x + y * w


class Denoiser(nn.Module):
    """x in [0, 1] → x + correction."""

    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_AttentionBlock(cfg.channels) for _ in range(cfg.blocks)])
        self.tail = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as the identity: it can only learn to help
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(nn.functional.leaky_relu(self.head(x), LEAKY_SLOPE)))


def _crops(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, size: int, rng: np.random.Generator):
    xs, ys = [], []
    for i in rng.integers(0, len(pairs), n):
        rec, orig = pairs[i]
        h, w = rec.shape[:2]
        s = min(size, h, w)
        y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        xs.append(np.pad(rec[y0 : y0 + s, x0 : x0 + s], ((0, size - s), (0, size - s), (0, 0)), mode="edge"))
        ys.append(np.pad(orig[y0 : y0 + s, x0 : x0 + s], ((0, size - s), (0, size - s), (0, 0)), mode="edge"))
    to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return to(xs), to(ys)


def train_denoiser(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    time_limit: float,
    seed: int = 0,
    cfg: DenoiserConfig = DenoiserConfig(),
    max_steps: int = 20_000,
    crop: int = 64,
    batch: int = 8,
) -> tuple[Denoiser, int, str]:
    """Train on (reconstruction, original) uint8 pairs; stops on convergence, ``time_limit`` s or steps.

    Returns the denoiser, the steps taken and why it stopped.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7])
    net = Denoiser(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    held_x, held_y = _crops(pairs, 16, crop, np.random.default_rng([seed, 8]))
    detector = ConvergenceDetector(200, 0.005, 0.01)
    start, step, reason = time.monotonic(), 0, "max_steps"
    while step < max_steps:
        if time.monotonic() - start >= time_limit:
            reason = "time_limit"
            break
        x, y = _crops(pairs, batch, crop, rng)
        loss = torch.mean((net(x) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        detector.add_loss(loss.item())
        if step % 200 == 0:
            with torch.no_grad():
                mse = float(torch.mean((net(held_x).clamp(0, 1) - held_y) ** 2))
            if detector.check(10 * math.log10(1 / max(mse, 1e-10))).converged:
                reason = "converged"
                break
    return net.eval(), step, reason


def worth_keeping(psnr_gain_db: float, denoiser_bytes: int, archive_bytes: int) -> bool:
    """Keep the post-filter only if it buys more quality than spending its bytes on the latents would.

    ``denoiser_bytes`` more in an archive of ``archive_bytes`` is a rate increase by a factor
    1 + d/a; at :data:`DB_PER_DOUBLING` dB per doubling that would buy 6.02·log2(1 + d/a) dB.
    """
    return psnr_gain_db > DB_PER_DOUBLING * math.log2(1 + denoiser_bytes / max(archive_bytes, 1))
