"""``pack --codec pyramid --gan`` / ``--perceptual``: the optional terms that make archives sharper,
added to the pyramid's training loss as the autoencoder adds them
(:mod:`archiver.codecs.autoencoder.training`), with the shared machinery:

- a perceptual distance P (:func:`archiver.model.perceptual.make_perceptual`: 1 − MS-SSIM, or LPIPS
  with user-supplied weights) in the distortion, ``λ·255²·(MSE + perceptual_weight·P)``;
- the adversarial phase (:class:`archiver.model.adversarial.AdversarialPhase`: PatchGAN, hinge loss,
  adaptive weight on the synthesis' last layer, mode-collapse guard), which starts at ``gan_start``
  steps, at the codec's first convergence or once half the time limit is used.

:func:`make_sharpen` gives None when neither is asked for: training is then exactly what it was.
Convergence watches the rate–distortion loss with P, never the adversarial term.
"""

from __future__ import annotations

import math
import time

import torch

from ...config import TrainConfig
from ...model.adversarial import AdversarialPhase, last_layer_weight
from ...model.perceptual import make_perceptual

__all__ = ["Sharpen", "make_sharpen"]


def make_sharpen(tc: TrainConfig, codec, device: torch.device, distributed: bool = False,
                 lpips_weights: str | None = None) -> "Sharpen | None":  # fmt: skip
    """The terms ``tc`` asks for on ``codec`` (a :class:`~archiver.codecs.pyramid.model.PyramidCodec`),
    or None when it asks for none."""
    perceptual = make_perceptual(tc.perceptual, lpips_weights)
    if perceptual is None and not tc.gan:
        return None
    if perceptual is not None:
        perceptual = perceptual.to(device)
    gan = AdversarialPhase(tc, last_layer_weight(codec.synthesis), device, distributed) if tc.gan else None
    return Sharpen(tc, perceptual, gan)


class Sharpen:
    """The perceptual term and the adversarial phase of one training run (pack-time only: nothing of
    it is stored in the archive but its summary)."""

    def __init__(self, tc: TrainConfig, perceptual, gan: AdversarialPhase | None) -> None:
        self.tc, self.perceptual, self.gan = tc, perceptual, gan
        self._distance = None  #: the last batch's P (a tensor: read back only for the summary)

    # -- one training step -----------------------------------------------------------------------
    def terms(self, loss: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, mse: torch.Tensor,
              lmbda: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(``loss`` with the perceptual term, what the optimizer minimises: that plus the adversarial
        term while the phase is on)."""
        rec = lmbda * 255.0**2 * mse
        if self.perceptual is not None:
            p = self.perceptual(x_hat, x)
            self._distance = p.detach()
            extra = lmbda * 255.0**2 * self.tc.perceptual_weight * p
            loss, rec = loss + extra, rec + extra
        if self.gan is not None and self.gan.active:
            return loss, loss + self.gan.generator_loss(x_hat, rec)
        return loss, loss

    def after_step(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """The discriminator's update, after the codec's (adversarial phase only)."""
        if self.gan is not None and self.gan.active:
            self.gan.discriminator_step(x, x_hat)

    # -- the schedule, at the convergence checks -------------------------------------------------
    def held(self, run, value: float) -> bool:
        """Before the convergence rule at a check of ``run`` (:class:`archiver.codecs.pyramid.train._Run`)
        with held-back PSNR ``value``: True when the adversarial phase fell back (the last good codec is
        restored and the phase ends) or started now (by ``gan_start`` or the clock); the rule then
        waits for the next check."""
        gan = self.gan
        if gan is None:
            return False
        step = run.state["step"]
        if gan.active:
            back = gan.guard(step, value, {"codec": run.codec.state_dict()})
            if back is None:
                return False
            run.codec.load_state_dict(back["codec"])
            mark = "gan_fell_back"
        else:
            from . import distributed as dist

            elapsed = dist.agree_clock(run.info, time.monotonic() - run.start, False, run.device)[0]
            if not gan.due(step, False, elapsed / run.tc.time_limit):
                return False
            gan.start(step, value, {"codec": run.codec.state_dict()})
            mark = "gan_started"
        run.state["history"].append({"step": step, "loss": run.state["loss"], "heldout_psnr": round(value, 4),
                                     "lr": run.state["lr"], "converged": False, mark: True})  # fmt: skip
        run.detector.reset()
        return True

    def on_converged(self, run) -> bool:
        """At the codec's convergence: True when the adversarial phase starts there (instead of a
        learning-rate drop or the end of training)."""
        gan = self.gan
        if gan is None or not gan.due(run.state["step"], True, 0.0):
            return False
        entry = run.state["history"][-1]
        gan.start(run.state["step"], entry["heldout_psnr"], {"codec": run.codec.state_dict()})
        entry["gan_started"] = True
        return True

    # -- resume and report -----------------------------------------------------------------------
    def state(self) -> dict:
        return {"gan": self.gan.state() if self.gan is not None else None}

    def restore(self, saved: dict | None) -> None:
        if saved and saved.get("gan") is not None and self.gan is not None:
            self.gan.restore(saved["gan"])

    def summary(self) -> dict:
        """What the archive's training summary says: ``gan`` (the autoencoder's record,
        :meth:`AdversarialPhase.summary`) and ``perceptual`` (kind, weight, the last batch's P)."""
        out = {}
        if self.gan is not None:
            out["gan"] = self.gan.summary()
        if self.perceptual is not None:
            last = None if self._distance is None else float(self._distance)
            out["perceptual"] = {"kind": self.tc.perceptual, "weight": self.tc.perceptual_weight,
                                 "last_distance": None if last is None or math.isnan(last) else round(last, 5)}  # fmt: skip
        return out
