"""Convergence detection: stop when the loss has flattened (a line fitted to the last window of losses)
and the held-back quality has stopped moving.

Every ``window`` steps a least-squares line is fitted to the last ``window`` training losses; the
run is *converged* when the fitted change over the window is below ``slope_tol`` of the mean loss
and the held-back PSNR moved by less than ``psnr_tol`` dB since the previous check.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ConvergenceDetector", "ConvergenceCheck"]


@dataclass(frozen=True)
class ConvergenceCheck:
    """Outcome of one check: relative loss decrease over the window, PSNR change (dB), verdict."""

    relative_improvement: float
    psnr_change: float
    converged: bool


class ConvergenceDetector:
    """Collects losses and decides, at each window boundary, whether training has converged."""

    def __init__(self, window: int, slope_tol: float, psnr_tol: float) -> None:
        if window < 2:
            raise ValueError("convergence window must be at least 2 steps")
        self.window = window
        self.slope_tol = slope_tol
        self.psnr_tol = psnr_tol
        self._losses: deque[float] = deque(maxlen=window)
        self._last_psnr: float | None = None

    def add_loss(self, loss: float) -> None:
        """Record one training step's loss."""
        self._losses.append(float(loss))

    def ready(self) -> bool:
        """True when a full window of losses is available."""
        return len(self._losses) == self.window

    def state(self) -> dict:
        """What :meth:`restore` needs to continue exactly (for training checkpoints)."""
        return {"losses": list(self._losses), "last_psnr": self._last_psnr}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state`."""
        self._losses.clear()
        self._losses.extend(state["losses"])
        self._last_psnr = state["last_psnr"]

    def reset(self) -> None:
        """Forget the window (e.g. after a learning-rate change) but keep the last PSNR."""
        self._losses.clear()

    def check(self, psnr: float) -> ConvergenceCheck:
        """Fit the loss line over the window and compare ``psnr`` (dB) with the previous check."""
        losses = np.asarray(self._losses, dtype=np.float64)
        steps = np.arange(len(losses), dtype=np.float64)
        slope = np.polyfit(steps, losses, 1)[0] if len(losses) >= 2 else 0.0
        mean = float(np.mean(np.abs(losses))) if len(losses) else 1.0
        relative = -slope * len(losses) / max(mean, 1e-12)
        delta = float("inf") if self._last_psnr is None else abs(psnr - self._last_psnr)
        self._last_psnr = psnr
        converged = bool(self.ready() and relative < self.slope_tol and delta < self.psnr_tol)
        return ConvergenceCheck(float(relative), delta, converged)
