"""The ``pyramid`` codec's train side: training on a collection, per-image latents (encoder, then
refinement through the int8 synthesis), and the arrays an archive stores.

Training follows the autoencoder's rules (random crops, ``λ·255²·MSE + bpp``, convergence
detection with learning-rate drops, time and step limits, checkpoints for ``--resume``) in named
steps of :class:`_Run` (:func:`_train_step` over :func:`optimizer_step`, :func:`_check`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...codec.weights import quantize_int8
from . import distributed as dist
from .plan import PyramidSpec
from ...config import PackConfig
from .levels import LAMBDAS as PYRAMID_LAMBDAS
from ...model.checkpoint import Checkpointer
from ...model.convergence import ConvergenceDetector
from .model import PyramidCodec
from .export import PackedSynthesis, context_net, int8_synthesis, pack_torch, synthesis_arrays, unpack_torch  # noqa: F401  (re-exported)
from .sharpen import make_sharpen
from ...model.crops import CropSampler, TrainProgress, resolve_device

__all__ = ["PyramidRecipe", "PyramidTrainResult", "train_pyramid", "evaluate_levels", "optimizer_step", "PackedSynthesis", "synthesis_arrays", "context_net"]

#: Training crop side in pixels (the synthesis sees a few pixels around each; 64 px crops train
#: 4× more steps per second than 128 px ones at the same pixels per step).
PYRAMID_CROP = 64
#: Crops per step.
PYRAMID_BATCH = 8
#: Fraction of training (time and steps) during which the full-size level is held at zero, so that
#: the coarse levels learn to carry the picture before the full-size grid adds what they cannot.
#: Without it the encoder routes everything through the full-size grid (measured on the dataset
#: regime: 2.7 bits a pixel of zeroth-order entropy there, the 1/2 grid all zeros; see the README).
PYRAMID_COARSE_FIRST = 0.5
#: Adam learning rate of pack's fine-tuning from a shipped base (instead of ``cfg.train.lr``, 1e-3,
#: which undoes part of what the base learned). Indicative probe (40 heldout dataset crops,
#: ``--quality 4``, 120 s packs on a busy CPU, base after 5,000 pretraining steps): 1e-3 gave
#: 29.37 dB at 0.889 bpp, 2e-4 29.90 dB at 0.876 bpp, 5e-5 29.83 dB at 0.878 bpp.
PYRAMID_FINETUNE_LR = 2e-4


@dataclass(frozen=True)
class PyramidRecipe:
    """How :func:`train_pyramid` draws its steps. ``pack`` uses the defaults (one quality, the
    coarse-first phase as a fraction of the limits); ``scripts/pretrain.py`` trains one
    variable-rate model for every ``--quality`` and starts pack's fine-tuning from it.

    Attributes:
        qualities: ``--quality`` levels drawn uniformly, one per step, each with its own λ
            (:data:`archiver.config.PYRAMID_LAMBDAS`) and quantization steps; empty: ``cfg.quality``
            alone at ``cfg.train.lmbda``.
        coarse_steps: steps of the coarse-first phase; None: :data:`PYRAMID_COARSE_FIRST` of the
            time limit and of the step cap (a warm start passes 0: its full-size level already
            learned its share).
        flip: mirror half of the crops left–right (augmentation for pretraining on few photos).
        heldout: (N, 3, h, w) batch in [0, 1] to judge convergence and log every level on; None:
            crops of the training images.
        start: a state dict of :class:`PyramidCodec` to start from (a shipped base).
        patience: also count training as converged when the held-back PSNR has not beaten its best
            by 0.05 dB for this many checks (a plateau); 0: off. Pretraining needs it: with a λ drawn
            per step the loss is too noisy for the detector's slope test, which then never fires.
        model_pixels: with ``start``, count the stored model's difference from it in the loss, as
            its estimated bits (:class:`DeltaRate`) spread over this many coded pixels, so that a
            weight moves from the base only where it pays for itself; 0: not counted.
    """

    qualities: tuple[int, ...] = ()
    coarse_steps: int | None = None
    flip: bool = False
    heldout: torch.Tensor | None = None
    start: dict | None = None
    model_pixels: int = 0
    patience: int = 0


#: Bits a stored weight delta of d quantization units costs, estimated as 2·log2(1 + |d|): about
#: what zstd spends on small integers that are mostly 0 (differentiable, so training can trade them).
DELTA_BITS_PER_LOG2 = 2.0


class DeltaRate(nn.Module):
    """Estimated bits of the stored difference between a codec's synthesis and context weights and
    those of ``start`` (the encoder is not stored; biases and steps are stored whole: fixed cost)."""

    def __init__(self, codec: PyramidCodec, start: dict) -> None:
        super().__init__()
        self.names, self.refs, self.units = [], [], []
        for name, param in codec.named_parameters():
            ref = start[name].detach().float()
            if name.startswith("synthesis.") and name.endswith(".weight") and ref.ndim == 4:
                # int8 units: the base's per-output-channel scale, exactly as the archive stores it
                unit = torch.from_numpy(quantize_int8(ref.cpu().numpy())[1]).view(-1, 1, 1, 1)
            elif name.startswith("context."):
                unit = torch.tensor(1.0 / 256.0)  # fixed point, 8 fractional bits
            else:
                continue
            self.names.append(name)
            self.refs.append(ref.to(param.device))  # once, not every step
            self.units.append(unit.to(param.device))

    def forward(self, codec: PyramidCodec) -> torch.Tensor:
        params = dict(codec.named_parameters())
        total = torch.zeros((), device=self.refs[0].device if self.refs else None)
        for name, ref, unit in zip(self.names, self.refs, self.units):
            total = total + torch.log2(1.0 + ((params[name] - ref) / unit).abs()).sum()
        return DELTA_BITS_PER_LOG2 * total


@dataclass
class PyramidTrainResult:
    """The trained codec and how training went (the fields pack stores, as the autoencoder's)."""

    codec: PyramidCodec
    steps: int
    seconds: float
    stop_reason: str
    final_loss: float
    heldout_psnr: float
    history: list[dict]
    crop: int
    rank: int = 0
    world: int = 1
    warm_start: dict | None = None  #: the shipped base training started from (None: from scratch)
    sharpen: dict | None = None  #: ``--gan`` / ``--perceptual``: their records (keys ``gan``, ``perceptual``)

    def summary(self) -> dict:
        return {
            "steps": self.steps, "train_seconds": round(self.seconds, 3), "stop_reason": self.stop_reason,
            "final_loss": self.final_loss, "heldout_psnr": self.heldout_psnr, "history": self.history,
            "crop": self.crop, "processes": self.world, "warm_start": self.warm_start, **(self.sharpen or {}),
        }  # fmt: skip


def evaluate_levels(codec: PyramidCodec, batch: torch.Tensor, qualities) -> list[dict]:
    """PSNR (dB, of the 8-bit rounded output, hard quantization) and bpp (the context model's
    estimate) of ``batch`` at each of ``qualities``."""
    codec.eval()
    out = []
    with torch.no_grad():
        for q in qualities:
            x_hat, bits = codec(batch, q, noise=False)
            mse = torch.mean((torch.round(x_hat.clamp(0, 1) * 255) - torch.round(batch * 255)) ** 2).item()
            bpp = bits.item() / (batch.shape[0] * batch.shape[2] * batch.shape[3])
            out.append({"quality": q, "psnr": round(10 * math.log10(255.0**2 / max(mse, 1e-10)), 3), "bpp": round(bpp, 4)})
    codec.train()
    return out


def _heldout_psnr(codec: PyramidCodec, batch: torch.Tensor, quality: int) -> float:
    return evaluate_levels(codec, batch, [quality])[0]["psnr"]


def _train_step(codec, optimizer, x, quality: int, lmbda: float, coarse_from: int = 0,
                model_bpp=None, sharpen=None) -> tuple[float, float, float]:  # fmt: skip
    """:func:`optimizer_step`, with (loss, mse, bpp) read back as floats."""
    loss, mse, bpp = optimizer_step(codec, optimizer, x, quality, lmbda, coarse_from, model_bpp, sharpen)
    return float(loss.item()), float(mse.item()), float(bpp.item())


def optimizer_step(codec, optimizer, x, quality: int, lmbda: float, coarse_from: int = 0,
                   model_bpp=None, sharpen=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """One optimizer step of ``λ·255²·MSE + bpp`` (+ the model's own bits per coded pixel; + the
    perceptual and adversarial terms of ``sharpen``, :mod:`archiver.codecs.pyramid.sharpen`); returns
    (loss, mse, bpp) as detached tensors on the codec's device, not read back, so that a caller on
    an accelerator can prepare its next batch while this one trains (``scripts/pretrain_gpu.py``)."""
    x_hat, bits = codec(x, quality, coarse_from=coarse_from)
    mse = torch.mean((x_hat - x) ** 2)
    bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
    loss = lmbda * 255.0**2 * mse + bpp
    if model_bpp is not None:
        loss = loss + model_bpp(codec)
    total = loss
    if sharpen is not None:  # the loss convergence watches has P, not the adversarial term
        loss, total = sharpen.terms(loss, x_hat, x, mse, lmbda)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
    optimizer.step()
    if sharpen is not None:
        sharpen.after_step(x, x_hat)
    return loss.detach(), mse.detach(), bpp.detach()


class _Run:
    """The mutable state of one training run and its named steps (the loop is :func:`train_pyramid`)."""

    def __init__(self, images, cfg: PackConfig, spec: PyramidSpec, recipe: PyramidRecipe, checkpointer,
                 lpips_weights: str | None = None) -> None:  # fmt: skip
        tc = cfg.train
        self.cfg, self.tc, self.recipe, self.checkpointer = cfg, tc, recipe, checkpointer
        self.info, self.device = dist.join(resolve_device(tc.device))
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        self.rng = np.random.default_rng([tc.seed, self.info.rank])  # its own crops on every rank
        self.codec = PyramidCodec(spec).to(self.device)
        self.model_bpp = None
        if recipe.start is not None:
            self.codec.load_state_dict(recipe.start)
            if recipe.model_pixels > 0:
                rate = DeltaRate(self.codec, recipe.start)
                self.model_bpp = lambda codec: rate(getattr(codec, "module", codec)) / recipe.model_pixels
        lr = tc.lr if recipe.start is None else PYRAMID_FINETUNE_LR
        self.optimizer = torch.optim.Adam(self.codec.parameters(), lr=lr)
        self.sampler = CropSampler(images, PYRAMID_CROP, self.rng, flip=recipe.flip)
        heldout = recipe.heldout
        if heldout is None:
            heldout = CropSampler(images, PYRAMID_CROP, np.random.default_rng(tc.seed + 1)).batch(16)
        self.heldout = heldout.to(self.device)
        self.detector = ConvergenceDetector(tc.check_every, tc.slope_tol, tc.psnr_tol)
        self.state = {"step": 0, "elapsed": 0.0, "lr": lr, "drops_left": tc.lr_drops, "history": [], "loss": math.nan}
        # before the generators are restored: the discriminator's initial weights draw from them
        self.sharpen = make_sharpen(tc, self.codec, self.device, self.info.enabled, lpips_weights)
        saved = checkpointer.load() if checkpointer else None
        if saved is not None and self.sharpen is not None:
            self.sharpen.restore(saved.get("sharpen"))
        if saved is not None:
            self.codec.load_state_dict(saved["codec"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.detector.restore(saved["detector"])
            self.rng.bit_generator.state, torch_rng = dist.rank_rngs(saved, self.info, checkpointer.folder)
            torch.set_rng_state(torch_rng)
            self.state = saved["state"]
        self.forward = dist.wrap(self.codec, self.info)  # what a training step calls (DDP under torchrun)
        self.start = time.monotonic() - self.state["elapsed"]

    def coarse(self, elapsed: float) -> bool:
        """True during the coarse-first phase (the full-size level held at zero)."""
        if self.recipe.coarse_steps is not None:
            return self.state["step"] < self.recipe.coarse_steps
        return _coarse_phase(self.state["step"], elapsed, self.tc)

    def quality(self) -> tuple[int, float]:
        """The ``--quality`` and λ of the next step."""
        if not self.recipe.qualities:
            return self.cfg.quality, self.tc.lmbda
        q = self.recipe.qualities[int(self.rng.integers(len(self.recipe.qualities)))]
        return q, PYRAMID_LAMBDAS[q]

    def step(self, coarse: bool) -> tuple[float, float, float]:
        quality, lmbda = self.quality()
        x = self.sampler.batch(PYRAMID_BATCH).to(self.device)
        loss, mse, bpp = _train_step(self.forward, self.optimizer, x, quality, lmbda, 1 if coarse else 0, self.model_bpp,
                                     self.sharpen)  # fmt: skip
        loss = dist.mean(self.info, loss, self.device)  # every rank's detector sees the same loss
        self.state["step"] += 1
        self.state["loss"] = loss
        self.detector.add_loss(loss)
        return loss, mse, bpp

    def check(self) -> tuple[float, bool]:
        """Held-back PSNR at the pack's quality and whether training has converged for good."""
        value = dist.mean(self.info, _heldout_psnr(self.codec, self.heldout, self.cfg.quality), self.device)
        sharpen = self.sharpen
        if sharpen is not None and sharpen.held(self, value):  # the adversarial phase started or fell back
            return value, False
        on_converged = (lambda: sharpen.on_converged(self)) if sharpen is not None else None
        stop = _check(self.detector, value, self.state, self.optimizer, self._plateau(value), on_converged)
        if self.recipe.qualities:  # a variable-rate run logs every level
            self.state["history"][-1]["levels"] = evaluate_levels(self.codec, self.heldout, self.recipe.qualities)
        return value, stop

    def _plateau(self, value: float) -> bool:
        """True when ``recipe.patience`` checks in a row have not beaten the best held-back PSNR."""
        if not self.recipe.patience:
            return False
        if "best" not in self.state and self.state["history"]:  # a run resumed from before the rule
            psnrs = [h["heldout_psnr"] for h in self.state["history"]]
            best = max(range(len(psnrs)), key=psnrs.__getitem__)
            self.state["best"], self.state["since_best"] = psnrs[best], len(psnrs) - 1 - best
        if value > self.state.get("best", -math.inf) + 0.05:
            self.state["best"], self.state["since_best"] = value, 0
            return False
        self.state["since_best"] = self.state.get("since_best", 0) + 1
        if self.state["since_best"] < self.recipe.patience:
            return False
        self.state["since_best"] = 0  # the next plateau is counted after the learning-rate drop
        return True

    def save(self) -> None:
        """Checkpoint (every rank calls it together: rank 0 writes every rank's generators)."""
        self.state["elapsed"] = time.monotonic() - self.start
        rngs = dist.gather_rngs(self.info, (self.rng.bit_generator.state, torch.get_rng_state()))
        if self.info.rank != 0:
            return
        self.checkpointer.save({
            "codec": self.codec.state_dict(), "optimizer": self.optimizer.state_dict(),
            "detector": self.detector.state(), "rngs": rngs[0], "rank_rngs": rngs, "world": self.info.world,
            "state": self.state, "sharpen": self.sharpen.state() if self.sharpen is not None else None,
        })  # fmt: skip


def train_pyramid(
    images: list[np.ndarray],
    cfg: PackConfig,
    spec: PyramidSpec,
    progress: Callable[[TrainProgress], None] | None = None,
    checkpointer: Checkpointer | None = None,
    report_every: int = 10,
    recipe: PyramidRecipe = PyramidRecipe(),
    warm_start: dict | None = None,
    lpips_weights: str | None = None,
) -> PyramidTrainResult:
    """Train a pyramid codec on ``images`` ((H, W, 3) uint8) until a stop rule fires.

    With a ``checkpointer`` the whole state (weights, optimizer, schedules, random generators) is
    saved every few minutes and a run resumes exactly from it. ``warm_start`` is what the result's
    summary records about ``recipe.start``. Under torchrun every rank trains (data parallel, its own
    crops, :mod:`archiver.codecs.pyramid.distributed`) and all stop at the same step.
    """
    tc = cfg.train
    run = _Run(images, cfg, spec, recipe, checkpointer, lpips_weights)
    stop_reason, heldout_value = "max_steps", math.nan
    while run.state["step"] < tc.max_steps:
        due = checkpointer is not None and run.info.rank == 0 and checkpointer.due()
        elapsed, save_now = dist.agree_clock(run.info, time.monotonic() - run.start, due, run.device)
        if elapsed >= tc.time_limit:
            stop_reason = "time_limit"
            break
        coarse = run.coarse(elapsed)
        if not coarse and run.state.get("coarse", False):
            run.detector.reset()  # the full-size level joins: a new loss curve
        run.state["coarse"] = coarse
        loss, mse, bpp = run.step(coarse)
        step = run.state["step"]
        if progress and (step % report_every == 0 or step == 1):
            psnr = 10 * math.log10(1.0 / max(mse, 1e-10))
            progress(TrainProgress(step, loss, psnr, bpp, elapsed, tc.time_limit - elapsed, run.state["lr"]))
        if step % tc.check_every == 0 and not coarse:
            heldout_value, stop = run.check()
            if stop:
                stop_reason = "converged"
                break
        if save_now:
            run.save()
    if checkpointer is not None:
        run.save()  # a run resumed with a larger budget continues from here
    if math.isnan(heldout_value) or stop_reason != "converged":
        heldout_value = _heldout_psnr(run.codec, run.heldout, cfg.quality)
    run.codec.eval()
    return PyramidTrainResult(
        run.codec.cpu(), run.state["step"], time.monotonic() - run.start, stop_reason, run.state["loss"],
        heldout_value, run.state["history"], PYRAMID_CROP, run.info.rank, run.info.world, warm_start=warm_start,
        sharpen=run.sharpen.summary() if run.sharpen is not None else None,
    )  # fmt: skip


def _coarse_phase(step: int, elapsed: float, tc) -> bool:
    """True during the coarse-first phase: the first :data:`PYRAMID_COARSE_FIRST` of the time limit
    and of the step cap."""
    return elapsed < PYRAMID_COARSE_FIRST * tc.time_limit and step < PYRAMID_COARSE_FIRST * tc.max_steps


def _check(detector: ConvergenceDetector, heldout: float, state: dict, optimizer, plateau: bool = False,
           on_converged: Callable[[], bool] | None = None) -> bool:  # fmt: skip
    """One convergence check (or a ``plateau`` of the held-back PSNR): logs it, drops the learning
    rate on convergence (unless ``on_converged()`` says it started the adversarial phase); True to stop."""
    check = detector.check(heldout)
    converged = check.converged or plateau
    state["history"].append({"step": state["step"], "loss": state["loss"], "heldout_psnr": round(heldout, 4),
                             "lr": state["lr"], "converged": converged})  # fmt: skip
    if not converged:
        return False
    if on_converged is not None and on_converged():
        detector.reset()
        return False
    if state["drops_left"] == 0:
        return True
    state["drops_left"] -= 1
    state["lr"] /= 10.0
    for group in optimizer.param_groups:
        group["lr"] = state["lr"]
    detector.reset()
    return False
