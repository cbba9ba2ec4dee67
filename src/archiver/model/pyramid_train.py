"""The ``pyramid`` codec's train side: training on a collection, per-image latents (encoder, then
refinement through the int8 synthesis), and the arrays an archive stores.

Training follows the autoencoder's rules (random crops, ``λ·255²·MSE + bpp``, convergence
detection with learning-rate drops, time and step limits, checkpoints for ``--resume``) in named
steps: :func:`_sample`, :func:`_train_step`, :func:`_check`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..codec.pyramid_coder import SYMBOL_CLIP, ContextNet
from ..codec.pyramid_plan import PyramidSpec
from ..config import PackConfig
from ..errors import InputError
from .checkpoint import Checkpointer
from .convergence import ConvergenceDetector
from .int8 import load_quantized, quantize_weights
from .prior import quantize_ste
from .pyramid import PyramidCodec, PyramidSynthesis, laplace_bits
from .refine import refine_latent
from .training import CropSampler, TrainProgress, resolve_device

__all__ = ["PyramidTrainResult", "train_pyramid", "PackedSynthesis", "synthesis_arrays", "context_net", "infer_packed"]

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
#: Adam step of the latent refinement, in quantization steps.
PYRAMID_REFINE_LR = 0.05


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

    def summary(self) -> dict:
        return {
            "steps": self.steps, "train_seconds": round(self.seconds, 3), "stop_reason": self.stop_reason,
            "final_loss": self.final_loss, "heldout_psnr": self.heldout_psnr, "history": self.history,
            "crop": self.crop, "processes": self.world, "warm_start": None,
        }  # fmt: skip


def unpack_torch(spec: PyramidSpec, packed: torch.Tensor) -> list[torch.Tensor]:
    """(N, packed_channels, h, w) → the grids, as :func:`archiver.codec.pyramid_plan.unpack_grids`
    (pixel_shuffle is DepthToSpace in DCR order)."""
    grids = []
    for c, (first, side) in zip(spec.channels, spec.blocks()):
        block = packed[:, first : first + c * side * side]
        grids.append(F.pixel_shuffle(block, side) if side > 1 else block)
    return grids


def pack_torch(spec: PyramidSpec, grids: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`unpack_torch`."""
    return torch.cat([F.pixel_unshuffle(g, side) if side > 1 else g for g, (_, side) in zip(grids, spec.blocks())], 1)


class PackedSynthesis(nn.Module):
    """Packed integer latent (as float) → RGB, the same computation as the ONNX graph."""

    def __init__(self, spec: PyramidSpec, synthesis: PyramidSynthesis, steps: torch.Tensor) -> None:
        super().__init__()
        self.spec, self.synthesis = spec, synthesis
        self.register_buffer("steps", steps)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        grids = unpack_torch(self.spec, packed)
        return self.synthesis([g * self.steps[i] for i, g in enumerate(grids)])


def synthesis_arrays(codec: PyramidCodec, quality: int) -> dict[str, np.ndarray]:
    """What ``/model/decoder`` stores: the synthesis' int8 weights and ``quant.steps`` (float32 (L,))."""
    arrays = quantize_weights(codec.synthesis)
    arrays["quant.steps"] = codec.steps(quality).detach().cpu().numpy().astype(np.float32)
    return arrays


def context_net(codec: PyramidCodec) -> ContextNet:
    """The context model's weights in fixed point (what the coder runs)."""
    phases = []
    for mlp in codec.context.mlps:
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        phases.append([(m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy()) for m in linears])
    return ContextNet.from_float(phases)


def _heldout_psnr(codec: PyramidCodec, batch: torch.Tensor, quality: int) -> float:
    codec.eval()
    with torch.no_grad():
        x_hat, _ = codec(batch, quality, noise=False)
    codec.train()
    mse = torch.mean((torch.round(x_hat.clamp(0, 1) * 255) - torch.round(batch * 255)) ** 2).item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def _train_step(codec, optimizer, x, quality: int, lmbda: float, coarse_from: int = 0) -> tuple[float, float, float]:
    x_hat, bits = codec(x, quality, coarse_from=coarse_from)
    mse = torch.mean((x_hat - x) ** 2)
    bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
    loss = lmbda * 255.0**2 * mse + bpp
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
    optimizer.step()
    return float(loss.item()), float(mse.item()), float(bpp.item())


def train_pyramid(
    images: list[np.ndarray],
    cfg: PackConfig,
    spec: PyramidSpec,
    progress: Callable[[TrainProgress], None] | None = None,
    checkpointer: Checkpointer | None = None,
    report_every: int = 10,
) -> PyramidTrainResult:
    """Train a pyramid codec on ``images`` ((H, W, 3) uint8) until a stop rule fires."""
    tc = cfg.train
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("--codec pyramid does not train under torchrun yet: run pack as one process")
    device = resolve_device(tc.device)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng([tc.seed, 0])
    codec = PyramidCodec(spec).to(device)
    optimizer = torch.optim.Adam(codec.parameters(), lr=tc.lr)
    sampler = CropSampler(images, PYRAMID_CROP, rng)
    heldout = CropSampler(images, PYRAMID_CROP, np.random.default_rng(tc.seed + 1)).batch(16).to(device)
    detector = ConvergenceDetector(tc.check_every, tc.slope_tol, tc.psnr_tol)
    state = {"step": 0, "elapsed": 0.0, "lr": tc.lr, "drops_left": tc.lr_drops, "history": [], "loss": math.nan}
    saved = checkpointer.load() if checkpointer else None
    if saved is not None:
        codec.load_state_dict(saved["codec"])
        optimizer.load_state_dict(saved["optimizer"])
        detector.restore(saved["detector"])
        rng.bit_generator.state, torch_rng = saved["rngs"]
        torch.set_rng_state(torch_rng)
        state = saved["state"]
    start = time.monotonic() - state["elapsed"]
    stop_reason, heldout_value = "max_steps", math.nan
    while state["step"] < tc.max_steps:
        elapsed = time.monotonic() - start
        if elapsed >= tc.time_limit:
            stop_reason = "time_limit"
            break
        coarse = _coarse_phase(state["step"], elapsed, tc)
        if not coarse and state.get("coarse", False):
            detector.reset()  # the full-size level joins: a new loss curve
        state["coarse"] = coarse
        loss, mse, bpp = _train_step(
            codec, optimizer, sampler.batch(PYRAMID_BATCH).to(device), cfg.quality, tc.lmbda, 1 if coarse else 0
        )  # fmt: skip
        state["step"] += 1
        state["loss"] = loss
        step = state["step"]
        detector.add_loss(loss)
        if progress and (step % report_every == 0 or step == 1):
            psnr = 10 * math.log10(1.0 / max(mse, 1e-10))
            progress(TrainProgress(step, loss, psnr, bpp, elapsed, tc.time_limit - elapsed, state["lr"]))
        if step % tc.check_every == 0 and not coarse:
            heldout_value = _heldout_psnr(codec, heldout, cfg.quality)
            if _check(detector, heldout_value, state, optimizer):
                stop_reason = "converged"
                break
        if checkpointer is not None and checkpointer.due():
            state["elapsed"] = time.monotonic() - start
            checkpointer.save({
                "codec": codec.state_dict(), "optimizer": optimizer.state_dict(), "detector": detector.state(),
                "rngs": (rng.bit_generator.state, torch.get_rng_state()), "state": state,
            })  # fmt: skip
    if math.isnan(heldout_value) or stop_reason != "converged":
        heldout_value = _heldout_psnr(codec, heldout, cfg.quality)
    codec.eval()
    return PyramidTrainResult(
        codec.cpu(), state["step"], time.monotonic() - start, stop_reason, state["loss"], heldout_value,
        state["history"], PYRAMID_CROP,
    )  # fmt: skip


def _coarse_phase(step: int, elapsed: float, tc) -> bool:
    """True during the coarse-first phase: the first :data:`PYRAMID_COARSE_FIRST` of the time limit
    and of the step cap."""
    return elapsed < PYRAMID_COARSE_FIRST * tc.time_limit and step < PYRAMID_COARSE_FIRST * tc.max_steps


def _check(detector: ConvergenceDetector, heldout: float, state: dict, optimizer) -> bool:
    """One convergence check: logs it, drops the learning rate on convergence; True to stop."""
    check = detector.check(heldout)
    state["history"].append({"step": state["step"], "loss": state["loss"], "heldout_psnr": round(heldout, 4),
                             "lr": state["lr"], "converged": check.converged})  # fmt: skip
    if not check.converged:
        return False
    if state["drops_left"] == 0:
        return True
    state["drops_left"] -= 1
    state["lr"] /= 10.0
    for group in optimizer.param_groups:
        group["lr"] = state["lr"]
    detector.reset()
    return False


def int8_synthesis(codec: PyramidCodec, arrays: dict[str, np.ndarray]) -> PackedSynthesis:
    """The packed synthesis with the int8 weights and steps of ``arrays`` (a new module; ``codec`` is
    unchanged)."""
    synthesis = load_quantized(PyramidSynthesis(codec.spec), {k: v for k, v in arrays.items() if k != "quant.steps"})
    return PackedSynthesis(codec.spec, synthesis, torch.from_numpy(arrays["quant.steps"].copy())).eval()


def infer_packed(codec: PyramidCodec, synth: PackedSynthesis, rgb: np.ndarray, quality: int, lmbda: float,
                 refine_steps: int, tile: int, halo: int) -> np.ndarray:  # fmt: skip
    """Packed integer latent (packed_channels, h, w) int32 of one image: the encoder's grids, then
    ``refine_steps`` of refinement through the int8 synthesis (tiled like the runtime)."""
    spec = codec.spec
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    height, width = x.shape[-2:]
    s = spec.stride
    ph, pw = -(-height // s) * s, -(-width // s) * s
    padded = F.pad(x, (0, pw - width, 0, ph - height), mode="replicate")
    steps = codec.steps(quality).detach()
    with torch.no_grad():
        grids = codec.encoder(padded)
        y = pack_torch(spec, [g / steps[i] for i, g in enumerate(grids)])
    if refine_steps > 0:
        for p in codec.context.parameters():
            p.requires_grad_(False)

        def rate(v: torch.Tensor) -> torch.Tensor:
            hard = unpack_torch(spec, quantize_ste(v))
            params = codec.context([torch.round(g).detach() for g in hard])
            return sum(laplace_bits(g, mu, ls).sum() for g, (mu, ls) in zip(hard, params))

        y = refine_latent(synth, padded, y, rate, lmbda, refine_steps, (height, width),
                          lr=PYRAMID_REFINE_LR, tile=tile, halo=halo, stride=s)  # fmt: skip
    return torch.clamp(torch.round(y), -SYMBOL_CLIP, SYMBOL_CLIP)[0].to(torch.int32).numpy()
