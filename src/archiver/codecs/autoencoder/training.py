"""Training the codec on one collection: random crops, rate–distortion loss, convergence detection."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from torch import nn

from ...codec.geometry import STRIDE
from ...config import PackConfig
from ...errors import InputError
from ...model.adversarial import AdversarialPhase, last_layer_weight
from .model import Autoencoder
from ...model.checkpoint import Checkpointer
from ...model.convergence import ConvergenceDetector
from ...model.distributed import agree, all_gather, init_distributed
from .loss import RateDistortion
from ...model.perceptual import make_perceptual
from ...model.prior import ChannelPrior
from .warmstart import find_warm_start
from ...model.crops import CropSampler, TrainProgress, resolve_device

__all__ = ["TrainResult", "train_codec"]


@dataclass
class TrainResult:
    """The trained networks and how training went."""

    model: Autoencoder
    prior: ChannelPrior
    steps: int
    seconds: float
    stop_reason: str  #: "converged", "time_limit" or "max_steps"
    final_loss: float
    heldout_psnr: float
    history: list[dict]
    crop: int  #: training crop side in pixels; images are padded to at least this size when coded
    rank: int = 0  #: this process's rank under torchrun (0 writes the archive)
    world: int = 1  #: number of training processes
    gan: dict | None = None  #: the adversarial phase's record (``--gan`` only)
    warm_start: dict | None = None  #: the shipped weights training started from (None: from scratch)

    def summary(self) -> dict:
        """JSON-able training summary stored in the archive."""
        return {
            "steps": self.steps,
            "train_seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
            "final_loss": self.final_loss,
            "heldout_psnr": self.heldout_psnr,
            "history": self.history,
            "crop": self.crop,
            "processes": self.world,
            "warm_start": self.warm_start,
            **({"gan": self.gan} if self.gan is not None else {}),
        }


def _crop_size(images: list[np.ndarray], wanted: int) -> int:
    """Training crop side in pixels: ``wanted``, or less when every image is smaller (multiple of 16).

    Images smaller than the crop are edge-padded on the bottom/right up to it, and pack/extract pad
    them the same way (``min_size`` of :func:`archiver.codecs.autoencoder.model.pad_to_stride`): a network
    trained on one padding geometry fails on another (measured on 47×61 images trained in 64×64
    crops: 31 dB decoded at 64×64, 14 dB at 48×64).
    """
    largest = max(max(im.shape[:2]) for im in images)
    return int(min(wanted, max(STRIDE, math.ceil(largest / STRIDE) * STRIDE)))


@torch.no_grad()
def _heldout_psnr(model: Autoencoder, batch: torch.Tensor) -> float:
    model.eval()
    x_hat = model.decoder(torch.round(model.encoder(batch))).clamp(0, 1)
    model.train()
    mse = torch.mean((torch.round(x_hat * 255) - torch.round(batch * 255)) ** 2).item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def train_codec(
    images: list[np.ndarray],
    cfg: PackConfig,
    progress: Callable[[TrainProgress], None] | None = None,
    report_every: int = 10,
    checkpointer: Checkpointer | None = None,
    lpips_weights: str | None = None,
) -> TrainResult:
    """Train an autoencoder and prior on ``images`` ((H, W, 3) uint8 arrays) until a stop rule fires.

    With a ``checkpointer`` the whole state (weights, optimizer, step, elapsed time, convergence
    window, random generators) is saved every few minutes, and training resumes from a saved state if
    there is one: the run then continues exactly as if it had not been interrupted.
    ``lpips_weights`` is the folder of LPIPS weights for ``--perceptual lpips``.
    """
    tc = cfg.train
    run = _Run(images, cfg, lpips_weights)
    run.resume(checkpointer)
    saver = checkpointer if run.info.rank == 0 else None  # rank 0 alone saves; every rank resumes from its file
    while run.step < tc.max_steps:
        elapsed = time.monotonic() - run.start
        rd_loss, mse, bpp = run.train_step()
        run.step += 1
        # Ranks agree on the mean loss and on stopping, so that all stop at the same step.
        run.loss_value, out_of_time, save_now = agree(
            run.info, rd_loss, elapsed >= tc.time_limit, run.device, saver is not None and saver.due()
        )  # fmt: skip
        if out_of_time:
            run.stop_reason = "time_limit"
            break
        run.detector.add_loss(run.loss_value)
        if progress and (run.step % report_every == 0 or run.step == 1):
            batch_psnr = 10 * math.log10(1.0 / max(mse, 1e-10))
            progress(TrainProgress(run.step, run.loss_value, batch_psnr, bpp, elapsed, tc.time_limit - elapsed, run.lr))
        if run.step % tc.check_every == 0:
            verdict = run.check(elapsed)
            if verdict == "stop":
                break
            if verdict == "fell_back":  # the last good codec is back: this step saves nothing
                continue
        if save_now:  # decided by rank 0, agreed by all: every rank hands over its random generators
            rank_rngs = all_gather(run.info.world, (run.rng.bit_generator.state, torch.get_rng_state()))
            if saver is not None:
                saver.save(run.state(rank_rngs))
    return run.result()


class _Run:
    """One training run's networks, optimiser and mutable state (what a checkpoint holds), and its
    named steps: :meth:`resume`, :meth:`train_step`, :meth:`check`, :meth:`result`."""

    def __init__(self, images: list[np.ndarray], cfg: PackConfig, lpips_weights: str | None) -> None:
        tc = self.tc = cfg.train
        device = resolve_device(tc.device)
        self.info = info = init_distributed(device)
        if info.enabled and device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
        self.device = device
        torch.manual_seed(tc.seed)  # same initial weights on every rank
        self.rng = np.random.default_rng([tc.seed, info.rank])  # different crops on every rank
        self.model = Autoencoder(cfg.model).to(device)
        self.prior = ChannelPrior(cfg.model.latent_channels).to(device)
        self.warm = find_warm_start(cfg.model) if tc.warm_start else None
        if self.warm is not None:
            self.warm.load_into(self.model, self.prior)
        perceptual = make_perceptual(tc.perceptual, lpips_weights)
        if perceptual is not None:
            perceptual = perceptual.to(device)
        rd = RateDistortion(self.model, self.prior, tc.lmbda, tc.rate_weight, perceptual, tc.perceptual_weight)
        self.gan = AdversarialPhase(tc, last_layer_weight(self.model.decoder), device, info.enabled) if tc.gan else None
        self.step_fn = nn.parallel.DistributedDataParallel(rd) if info.enabled else rd
        self.params = list(rd.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=tc.lr)
        self.crop = _crop_size(images, tc.crop)
        # Collections of small images train on small crops; the batch grows so that a step still sees
        # batch × crop² pixels: 8 crops of 32×32 gave a loss so noisy that convergence was declared on
        # noise (tiny regime: stopped at 18 dB held-back PSNR).
        self.batch = tc.batch * max(1, (tc.crop // self.crop) ** 2)
        self.sampler = CropSampler(images, self.crop, self.rng)
        self.heldout = CropSampler(images, self.crop, np.random.default_rng(tc.seed + 1)).batch(max(4, self.batch)).to(device)
        self.detector = ConvergenceDetector(tc.check_every, tc.slope_tol, tc.psnr_tol)
        self.drops_left, self.lr = tc.lr_drops, tc.lr
        self.history: list[dict] = []
        self.step, self.loss_value, self.stop_reason, self.heldout_value = 0, math.nan, "max_steps", math.nan
        self.start = time.monotonic()

    def resume(self, checkpointer: Checkpointer | None) -> None:
        """Continue from the checkpointer's saved state, if there is one (same number of processes)."""
        saved = checkpointer.load() if checkpointer else None
        elapsed0 = 0.0
        if saved is not None and saved.get("world", 1) != self.info.world:
            raise InputError(
                f"{checkpointer.folder}: checkpoint was made by {saved.get('world', 1)} training process(es), "
                f"this run has {self.info.world}; resume with the same number of processes"
            )
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.prior.load_state_dict(saved["prior"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.detector.restore(saved["detector"])
            # Every rank continues its own crop sequence (checkpoints hold all ranks' generators).
            self.rng.bit_generator.state, torch_rng = saved["rank_rngs"][self.info.rank]
            torch.set_rng_state(torch_rng)
            self.step, elapsed0, self.lr, self.drops_left = saved["step"], saved["elapsed"], saved["lr"], saved["drops_left"]
            self.history, self.loss_value = saved["history"], saved["loss"]
            if self.gan is not None:
                self.gan.restore(saved["gan"])
        self.start = time.monotonic() - elapsed0

    def state(self, rank_rngs: list) -> dict:
        """Everything a checkpoint holds (``rank_rngs``: every rank's generators)."""
        return {
            "world": self.info.world, "rank_rngs": rank_rngs,
            "model": self.model.state_dict(), "prior": self.prior.state_dict(), "optimizer": self.optimizer.state_dict(),
            "detector": self.detector.state(),
            "step": self.step, "elapsed": time.monotonic() - self.start, "lr": self.lr, "drops_left": self.drops_left,
            "history": self.history, "loss": self.loss_value, "gan": self.gan.state() if self.gan is not None else None,
        }  # fmt: skip

    def _codec_state(self) -> dict:
        return {"model": self.model.state_dict(), "prior": self.prior.state_dict()}

    def train_step(self) -> tuple[float, float, float]:
        """One optimiser step on a fresh batch (and the discriminator's, in the adversarial phase):
        (rate–distortion loss, batch MSE in [0, 1]², estimated bpp)."""
        x = self.sampler.batch(self.batch).to(self.device)
        loss, mse, bpp, x_hat, rec = self.step_fn(x)
        rd_loss = float(loss.item())  # convergence watches rate–distortion, not the adversarial game
        gan_on = self.gan is not None and self.gan.active
        if gan_on:
            loss = loss + self.gan.generator_loss(x_hat, rec)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        if gan_on:
            self.gan.discriminator_step(x, x_hat)
        return rd_loss, float(mse.item()), float(bpp.item())

    def check(self, elapsed: float) -> str | None:
        """Held-out PSNR, then the stop rules: "stop" when converged with no learning-rate drop left,
        "fell_back" when the adversarial phase collapsed and the last good codec was restored; on
        convergence otherwise the learning rate drops tenfold (or the adversarial phase starts)."""
        gan = self.gan
        self.heldout_value = _heldout_psnr(self.model, self.heldout)
        check = self.detector.check(self.heldout_value)
        self.history.append(
            {"step": self.step, "loss": self.loss_value, "heldout_psnr": round(self.heldout_value, 4), "lr": self.lr,
             **asdict(check)}
        )  # fmt: skip
        if gan is not None and gan.active:
            back = gan.guard(self.step, self.heldout_value, self._codec_state())
            if back is not None:  # mode collapse: the last good codec, and no more GAN
                self.model.load_state_dict(back["model"])
                self.prior.load_state_dict(back["prior"])
                self.history[-1]["gan_fell_back"] = True
                self.detector.reset()
                return "fell_back"
        if gan is not None and gan.due(self.step, check.converged, elapsed / self.tc.time_limit):
            gan.start(self.step, self.heldout_value, self._codec_state())
            self.history[-1]["gan_started"] = True
            self.detector.reset()
        elif check.converged:
            if self.drops_left == 0:
                self.stop_reason = "converged"
                return "stop"
            self.drops_left -= 1
            self.lr /= 10.0
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
            self.detector.reset()
        return None

    def result(self) -> TrainResult:
        """The trained networks (on the CPU, in eval mode) and how training went."""
        if math.isnan(self.heldout_value) or self.stop_reason != "converged":
            self.heldout_value = _heldout_psnr(self.model, self.heldout)
        self.model.eval()
        return TrainResult(
            model=self.model.cpu(),
            prior=self.prior.cpu(),
            steps=self.step,
            seconds=time.monotonic() - self.start,
            stop_reason=self.stop_reason,
            final_loss=self.loss_value,
            heldout_psnr=self.heldout_value,
            history=self.history,
            crop=self.crop,
            rank=self.info.rank,
            world=self.info.world,
            gan=self.gan.summary() if self.gan is not None else None,
            warm_start=self.warm.summary() if self.warm is not None else None,
        )
