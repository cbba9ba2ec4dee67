"""Annealed latent optimization of the ``pyramid`` codec (C3's encoding recipe, Kim et al. 2023,
arXiv 2312.02753), batched over images of one size.

Each image's packed latent ``y`` (units of its quantization steps, :mod:`.infer`) is optimized
for ``λ·255²·MSE + bits / pixel`` through the collection's int8 synthesis, with the codec's
context model for the bits, in two stages:

1. **Soft rounding and noise** (the first :data:`SOFT_SHARE` of the steps): the synthesis and the
   rate see ``ŷ = sr_T(sr_T(y) + u)``, with ``sr_T`` the soft rounding of temperature ``T``
   (Agustsson & Theis 2020: ``floor(y) + ½ + tanh(Δ/T) / (2 tanh(1/(2T)))``, Δ = y − floor(y) − ½;
   T → 0 is rounding, large T the identity) and ``u`` centred Kumaraswamy noise on (−½, ½).
   ``T`` falls from :data:`T_START` to :data:`T_END` and the noise's shape ``a`` rises from 1
   (uniform) to :data:`NOISE_A_END` (more concentrated), both linearly: the loss starts smooth,
   which is where Adam's normalized steps do no harm, and ends close to the rounded one.
2. **Straight-through** (the rest): rounding forward, identity backward, a tenth of the step size;
   each image keeps the best rounded latent it has seen (its loss with real rounding).

Adam's step (:data:`LR`, in quantization steps) decays by a cosine over each stage. The context
model's means and scales come from the rounded latent (what the decoder has) without gradient,
recomputed every :data:`REFRESH` steps. Images are independent: the loss is their sum, so a batch
of N images costs one synthesis call per step instead of N, and every image gets what it would
alone (Adam is elementwise).

Pack (:mod:`archiver.codecs.pyramid.pack`) anneals a batch when the refinement's fair share of the
time left affords :data:`MIN_STEPS` (:class:`Annealer`), and otherwise runs the integer search
(:mod:`archiver.model.refine`), which is cheaper per step and better below that. The annealing runs
on the pack's ``--device`` (:class:`AnnealDevice`); the search, the measuring and the coding on the CPU.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...model.prior import quantize_ste
from ...model.refine import _stopped
from .export import pack_torch, unpack_torch
from .anneal_ops import _PackedBits, _SoftNoisy
from .model import laplace_inverse_scale

__all__ = [
    "AnnealSchedule", "AnnealStep", "Annealer", "AnnealDevice", "anneal_latents", "anneal_step", "batches",
    "kumaraswamy_noise", "optimizable", "soft_round",
]  # fmt: skip

#: Share of the steps spent in the soft-rounding stage (C3: most of them).
SOFT_SHARE = 0.8
#: Soft-rounding temperature at the start and end of stage 1 (C3 anneals 0.3 → 0.1).
T_START, T_END = 0.3, 0.1
#: Kumaraswamy shape at the end of stage 1 (1: uniform noise; larger: more concentrated at 0).
#: Without any noise (soft rounding alone) 200 steps were +18.7 % BD-rate against the search instead
#: of −3.2 % (benchmarks/results/refine-headroom-anneal.md).
NOISE_A_END = 2.0
#: Adam's first step, in quantization steps (stage 2 starts at a tenth of it). On 8 heldout crops
#: at q4, 150 steps: loss (λ·MSE + bpp) 1.465 at 0.05 against 1.477 at 0.1.
LR = 0.05
#: Steps between recomputations of the context model's (mean, scale).
REFRESH = 10
#: Steps between progress reports (:func:`anneal_latents`'s ``on_step``).
REPORT_EVERY = 10


@dataclass(frozen=True)
class AnnealSchedule:
    """The annealing's knobs (defaults: the module's constants)."""

    soft_share: float = SOFT_SHARE
    t_start: float = T_START
    t_end: float = T_END
    noise_a_end: float = NOISE_A_END
    lr: float = LR
    refresh: int = REFRESH
    noise: bool = True  #: stage 1 adds noise (False: soft rounding alone)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "AnnealSchedule":
        return cls(**d)


@dataclass(frozen=True)
class AnnealStep:
    """Where one step of an annealing of ``steps`` steps stands (:func:`anneal_step`): in the soft
    stage or not, its index ``k`` within its stage, the temperature ``t`` and noise shape ``a`` (soft
    stage), and ``lr_scale``: Adam's step as a fraction of the schedule's ``lr`` (a cosine over each
    stage, a tenth in the straight-through one)."""

    soft: bool
    k: int
    t: float
    a: float
    lr_scale: float


def anneal_step(schedule: AnnealSchedule, step: int, steps: int) -> AnnealStep:
    """Temperature, noise and step size of ``step`` of ``steps`` (the module docstring's recipe), for
    :func:`anneal_latents` and the studies that vary what is optimized along with the latents."""
    soft = int(round(steps * schedule.soft_share))
    if step < soft:
        frac = step / max(soft - 1, 1)
        t = schedule.t_start + (schedule.t_end - schedule.t_start) * frac
        a = 1.0 + (schedule.noise_a_end - 1.0) * frac
        return AnnealStep(True, step, t, a, 0.5 * (1 + math.cos(math.pi * step / soft)))
    k = step - soft
    return AnnealStep(False, k, 0.0, 1.0, 0.1 * 0.5 * (1 + math.cos(math.pi * k / max(steps - soft, 1))))


def soft_round(y: torch.Tensor, t: float) -> torch.Tensor:
    """``floor(y) + ½ + tanh(Δ / t) / (2 tanh(1 / (2t)))`` with Δ = y − floor(y) − ½ (see the
    module docstring): rounding as t → 0, the identity as t grows."""
    f = torch.floor(y)
    return f + 0.5 + torch.tanh((y - f - 0.5) / t) / (2.0 * math.tanh(0.5 / t))


def kumaraswamy_noise(like: torch.Tensor, a: float) -> torch.Tensor:
    """Noise on (−½, ½) from a Kumaraswamy(a, b) with b making its mode ½ (a = 1: uniform)."""
    b = (2.0**a * (a - 1.0) + 1.0) / a
    u = torch.rand_like(like).clamp_(1e-6, 1.0 - 1e-6)
    return (1.0 - (1.0 - u) ** (1.0 / b)) ** (1.0 / a) - 0.5


def anneal_latents(codec, synth, targets: torch.Tensor, z: torch.Tensor, valid: tuple[int, int], lmbda: float,
                   steps: int, schedule: AnnealSchedule = AnnealSchedule(),
                   on_step: Callable[[int, int, dict], None] | None = None, tails=None) -> torch.Tensor:  # fmt: skip
    """Integer latents (N, C, h, w, as float) of ``N`` images after ``steps`` annealed steps from
    the continuous ``z`` (see the module docstring). ``targets``: the padded images (N, 3, H, W) in
    [0, 1]; ``valid``: their own (height, width), the same for all (the rest is padding).
    ``on_step(step, steps, {"psnr", "bpp"})`` every :data:`REPORT_EVERY` steps: the batch's mean
    PSNR (dB) and bits per pixel under the stage's quantization proxy. ``tails``: an
    :class:`~archiver.codecs.pyramid.tail_fit.ImageTails` of the batch, learned beside the latents
    (:mod:`archiver.codecs.pyramid.tail_fit`); its ``kept`` says which images keep theirs."""
    for p in list(synth.parameters()) + list(codec.context.parameters()):
        p.requires_grad_(False)
    best = torch.round(z.detach())
    if steps <= 0:
        return best
    objective = _Objective(codec, synth, targets, valid, lmbda, tails)
    best_loss = objective.hard(best)
    y = z.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam(objective.groups(y, schedule.lr), lr=schedule.lr)
    for step in range(steps):
        if _stopped():
            break
        at = anneal_step(schedule, step, steps)
        refresh = at.k % schedule.refresh == 0
        if at.soft:
            y_hat = _SoftNoisy.apply(y, at.t, kumaraswamy_noise(y, at.a) if schedule.noise else None)
            per_image = objective(y_hat, y, refresh, quantized=False)
        else:
            per_image = objective(quantize_ste(y), y, refresh, quantized=True)
            with torch.no_grad():  # the rounded latent's loss: keep the best per image
                better = per_image.detach() < best_loss
                best[better] = torch.round(y.detach()[better])
                best_loss = torch.where(better, per_image.detach(), best_loss)
                objective.keep_best(better)
        if on_step is not None and step % REPORT_EVERY == 0:
            on_step(step, steps, objective.losses.report())
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * at.lr_scale
        optimizer.zero_grad(set_to_none=True)
        per_image.sum().backward()
        optimizer.step()
    last = torch.round(y.detach())  # the last step's latent, if it is the best
    better = objective.hard(last) < best_loss
    best[better] = last[better]
    objective.keep_best(better)
    objective.finish(best)
    return best


class _Objective:
    """The annealing's per-image loss (:class:`_LossOf`) through the optimizable synthesis, plus,
    when the batch learns tails (:mod:`archiver.codecs.pyramid.tail_fit`), their proxy bits per
    pixel; the parameter groups Adam moves and the tails' bookkeeping."""

    def __init__(self, codec, synth, targets, valid, lmbda, tails) -> None:
        run = optimizable(synth)
        if tails is not None:
            from .tail_fit import TailedSynthesis

            if not getattr(run, "takes_tails", False):
                raise ValueError("this synthesis cannot take per-image tails")
            run = TailedSynthesis(run, tails)
        self.run, self.tails, self.pixels = run, tails, valid[0] * valid[1]
        self.losses = _LossOf(codec, run, targets, valid, lmbda)

    def __call__(self, y_hat: torch.Tensor, y: torch.Tensor, refresh: bool, quantized: bool) -> torch.Tensor:
        if self.tails is None:
            return self.losses(y_hat, y, refresh)
        self.run.quantized = quantized
        return self.losses(y_hat, y, refresh) + self.tails.proxy_bits() / self.pixels

    def hard(self, y: torch.Tensor) -> torch.Tensor:
        """Per-image loss of the integer latents ``y`` (tails rounded)."""
        with torch.no_grad():
            return self(y, y, True, quantized=True)

    def groups(self, y: torch.Tensor, lr: float) -> list[dict]:
        """Adam's parameter groups, each with its ``base`` step (the schedule scales them alike)."""
        groups = [{"params": [y], "base": lr}]
        if self.tails is not None:
            from .tail_fit import LR_TAIL

            groups.append({"params": list(self.tails.parameters()), "base": LR_TAIL})
        return groups

    def keep_best(self, better: torch.Tensor) -> None:
        if self.tails is not None:
            self.tails.keep_best(better)

    def finish(self, best: torch.Tensor) -> None:
        """Decide which images keep their tails (:func:`~archiver.codecs.pyramid.tail_fit.choose_tails`)."""
        if self.tails is not None:
            from .tail_fit import choose_tails

            choose_tails(self.losses, self.run, best, self.pixels)


class AnnealDevice:
    """:func:`anneal_latents` on the pack's ``--device`` (``auto``: CUDA when there is one). The codec
    and the synthesis are copied there on first use, each batch's images and latents per batch, and
    the integer latents come back to the CPU, where pack measures and codes them. On the CPU the
    pack's own modules are used, nothing is copied."""

    def __init__(self, codec, synth, device: str) -> None:
        self.codec, self.synth, self.name = codec, synth, device
        self.device: torch.device | None = None

    def anneal(self, targets: torch.Tensor, z: torch.Tensor, valid: tuple[int, int], lmbda: float, steps: int,
               on_step: Callable[[int, int, dict], None] | None = None, tails=None) -> torch.Tensor:  # fmt: skip
        """:func:`anneal_latents` of the batch on the device (``tails`` too); the result on the CPU."""
        if self.device is None:
            from ...model.crops import resolve_device

            self.device = resolve_device(self.name)
            if self.device.type != "cpu":
                self.codec, self.synth = copy.deepcopy(self.codec).to(self.device), copy.deepcopy(self.synth).to(self.device)
        if tails is not None:
            tails.to(self.device)
        y = anneal_latents(self.codec, self.synth, targets.to(self.device), z.to(self.device), valid, lmbda, steps,
                           on_step=on_step, tails=tails)  # fmt: skip
        return y.cpu()


def optimizable(synth):
    """The synthesis to optimize latents through (the annealing and the integer search):
    :class:`~archiver.codecs.pyramid.fastsynth.OptimSynthesis`, the same function laid out for
    speed (benchmarks/results/anneal-throughput.md); the packed synthesis itself if its plan does not
    start with 1×1 layers. The search's 30 trials on 8 heldout crops: 5.1 → 4.3 s at q4, 16.4 → 12.1
    s at q8, the same latents. torch.compile was slower (246 ms a step against 155 channels-last,
    after 47 s of compiling)."""
    from .fastsynth import OptimSynthesis

    try:
        return OptimSynthesis(synth)
    except ValueError:
        return synth


class _LossOf:
    """Per-image loss ``λ·255²·MSE + bits / pixel`` of a batch, the context's (mean, inverse scale)
    of the rounded latent kept between refreshes, packed like the latent."""

    def __init__(self, codec, synth, targets, valid, lmbda) -> None:
        self.codec, self.synth, self.targets, self.lmbda = codec, synth, targets, lmbda
        self.h, self.w = valid
        self.params = None

    def __call__(self, y_hat: torch.Tensor, y: torch.Tensor, refresh: bool) -> torch.Tensor:
        if refresh or self.params is None:
            with torch.no_grad():
                spec = self.codec.spec
                params = self.codec.context([torch.round(g) for g in unpack_torch(spec, y.detach())])
                mu = pack_torch(spec, [m for m, _ in params])
                inv_b = laplace_inverse_scale(pack_torch(spec, [ls for _, ls in params]))  # once per refresh
                self.params = (mu, inv_b)
        x_hat = self.synth(y_hat)
        err = (x_hat[..., : self.h, : self.w] - self.targets[..., : self.h, : self.w]) ** 2
        mse = err.mean(dim=(1, 2, 3))
        bits = _PackedBits.apply(y_hat, *self.params)
        self.last = (mse.detach(), bits.detach())
        return self.lmbda * 255.0**2 * mse + bits / (self.h * self.w)

    def report(self) -> dict:
        """The last call's mean PSNR (dB, of [0, 1] pixels) and bits per pixel over the batch."""
        mse, bits = self.last
        return {"psnr": float(torch.mean(-10 * torch.log10(mse.clamp_min(1e-10)))), "bpp": float(bits.mean()) / (self.h * self.w)}

    def hard(self, y: torch.Tensor) -> torch.Tensor:
        """Per-image loss of the integer latents ``y`` (context of ``y`` itself)."""
        with torch.no_grad():
            return self(y, y, True)


#: Fewest annealing steps an image gets, else it is searched (:func:`~archiver.model.refine._search`)
#: instead. 8 heldout crops of 128² (base pyramid-b3, no fine-tuning, loss λ·MSE + bpp): at q4 the
#: search's 30 trials 1.512 in 5.5 s, 50 annealing steps 1.529 in 3.2 s, 100 steps 1.481 in 6.3 s,
#: 200 steps 1.458 in 11.3 s; at q8 the search (after its relaxation) 3.782 in 20.7 s, 100 steps
#: 3.871, 200 steps 3.711 in 10.7 s (benchmarks/results/refine-headroom-anneal-steps.md; over
#: q2–q8: refine-headroom-anneal.md). Measured before OptimSynthesis, which sped both up.
MIN_STEPS = 100
#: Most annealing steps an image gets, per step the search may take (``--refine``, 30 by default:
#: 600; with ``--effort E`` E times that): about the time the search's trials take at q8 (20.7 s
#: for 8 crops, 30 trials after their relaxation), three times theirs at q4; ``--refine 4`` and
#: under anneal nothing.
STEPS_PER_TRIAL = 20
#: Seconds per pixel-step of annealing before any is measured (the measured cost takes over after
#: the first batch). With pack's allocator setting on the 2-core machine: 46–47 ms a step for 16
#: crops of 128² (0.18 µs; benchmarks/results/anneal-throughput.md), 11.8–13.1 s for 150 steps of
#: one 768×432 photo, context refreshes and the best-latent bookkeeping included (0.24–0.26 µs).
#: The slower of the two: a first batch priced too cheaply takes more than its share.
SECONDS_PER_PIXEL_STEP = 2.5e-7
#: Most pixels annealed in one batch (32 crops of 128²), and the largest image annealed at all:
#: a step holds about 1 kB of activations a pixel; larger images are searched tile by tile.
BATCH_PIXELS = 1 << 19
MAX_PIXELS = 1 << 22


def batches(sizes: dict[int, tuple[int, int]]) -> list[list[int]]:
    """Keys of images of one (height, width) in batches of at most :data:`BATCH_PIXELS` pixels (one
    image at least), first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for key, size in sizes.items():
        groups.setdefault(size, []).append(key)
    out = []
    for (h, w), keys in groups.items():
        per = max(1, BATCH_PIXELS // max(h * w, 1))
        out += [keys[i : i + per] for i in range(0, len(keys), per)]
    return out


class Annealer:
    """Prices annealing steps from the refinement's :class:`~archiver.model.refine.RefineBudget`
    (the time this batch may take) and its own measured cost; records what it spent there."""

    def __init__(self, budget, min_steps: int | None = None, effort: float = 0.0) -> None:
        self.budget, self.min_steps = budget, MIN_STEPS if min_steps is None else min_steps
        # --effort E asks for E times the compute per pixel: the cap grows with it (with effort 16
        # and the plain cap, 8 album photos stopped at 600 steps with 244 s of 1,132 unused).
        self.max_steps = int(STEPS_PER_TRIAL * budget.max_steps * max(1.0, effort))
        self.pixel_steps, self.seconds, self.images, self.steps_given = 0, 0.0, 0, []

    def steps_for(self, pixels: int, images: int) -> int:
        """Annealing steps for the next batch of ``pixels`` (0: search it instead)."""
        if self.max_steps < self.min_steps or pixels // max(images, 1) > MAX_PIXELS:
            return 0
        cost = self.seconds / self.pixel_steps if self.pixel_steps else SECONDS_PER_PIXEL_STEP
        # Steps from the batch's fair share of the time left (as the search prices its trials); the
        # budget's capped share only sets when the batch must stop. Pricing from the capped share
        # let each of 8 album photos take twice its share, and the last two got 0.5 search trials.
        fair = self.budget.fair_share(pixels)
        steps = min(int(fair / (cost * pixels)), self.max_steps)
        return steps if steps >= self.min_steps else 0

    def done(self, pixels: int, images: int, steps: int, seconds: float) -> None:
        self.budget.spend(pixels, seconds)
        self.pixel_steps += pixels * steps
        self.seconds += seconds
        self.images += images
        self.steps_given.append(steps)

    def summary(self) -> dict:
        """JSON-able: images annealed, their batches' mean steps and the seconds it took."""
        given = self.steps_given or [0]
        return {"images": self.images, "mean_steps": round(sum(given) / len(given), 1), "seconds": round(self.seconds, 3)}
