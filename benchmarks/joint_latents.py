"""Joint optimization of the collection's latents with the decoder against pack's relaxation, on the
same heldout crops and the same time (a study; pack does not do it: below).

    python benchmarks/joint_latents.py [--images 64] [--quality 8] [--finetune 77] [--joint 90] [--tag T]

Pack fine-tunes the encoder, synthesis and context network on random crops, then moves each image's
latent alone through the fixed decoder (from ``--quality`` 5 up: relaxation, then the integer
search, :mod:`archiver.model.refine`). Joint optimization instead makes every image's continuous
latent a parameter, started from the fine-tuned encoder's, and optimizes it together with the
synthesis and context network on aligned crops of the collection, as a per-image overfitted codec
(Cool-chic, C3) optimizes its latents and networks together; then the integer search alone.
From the shipped base (pack's default spec), on the first N heldout dataset crops of 128²:

- ``usual``: fine-tuning as pack does it (8 crops of 64², Adam at pack's rate) for ``--finetune``
  seconds, then every crop's latent relaxed and searched alone through the int8 synthesis
  (:func:`archiver.codecs.pyramid.infer.refine_continuous`, relaxation as pack decides it);
- ``joint``: the same fine-tuned codec, then :func:`joint_optimize` for ``--joint`` seconds from
  its encoder's latents, then the search alone.

Rate: the integer coder's ideal bits under tables counted from the latents (no model, container);
distortion: the int8 synthesis' rounded output. The loss λ·255²·MSE + bpp (MSE of all pixels)
ranks them. Writes ``benchmarks/results/joint-latents[-T].{json,md}``.

Each joint step draws :data:`JOINT_BATCH` crops of :data:`JOINT_CROP` pixels, images in proportion
to their pixels, at multiples of the coarsest grid's cell so that a crop's latent is whole cells.
The synthesis sees the latents plus uniform noise for the first half of the time, then rounded
(straight-through); the rate is that of the noisy latents under the context of the rounded ones, as
in training; the latents' step (quantization steps) and the networks' are annealed to 0 by a
cosine. Memory: about 20 bytes a pixel (the latents, Adam's two moments, the pixels).

Why pack does not do it (2026-12-04; 8-minute packs of the 400 heldout dataset crops, ``--quality``
8, ``rd-dataset-pyramid-b3-*joint-heldout-q8.md``): joint from the base, without fine-tuning, for
16 minutes: 2.051 bpp at 39.77 dB against 2.096 at 40.19 for fine-tuning and relaxation (about 4 %
more bytes at equal PSNR, against WebP's curve); fine-tuning, then joint for half the refinement
budget in place of the relaxation: 2.087 at 40.24 (about 1 % fewer bytes: run-to-run noise) for 20
bytes a pixel of memory. Variants tried on 64 crops at 90 s: 32 crops a step, the latents' step
0.2, straight-through rounding from the start: no better (+0.1 … +1.7 % loss).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from archiver.bench.compare import machine  # noqa: E402
from archiver.codecs.pyramid.coder import HistogramCounter, PackedPyramidCoder  # noqa: E402
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS  # noqa: E402
from archiver.codecs.pyramid.read import pyramid_tiling  # noqa: E402
from archiver.codecs.pyramid.levels import LAMBDAS as PYRAMID_LAMBDAS  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec, laplace_bits  # noqa: E402
from archiver.codecs.pyramid.base import find_pyramid_base  # noqa: E402
from archiver.codecs.pyramid.infer import encode_continuous, padded_image, quantize_continuous, refine_continuous  # noqa: E402
from archiver.codecs.pyramid.train import (  # noqa: E402
    PYRAMID_BATCH, PYRAMID_CROP, PYRAMID_FINETUNE_LR, context_net, int8_synthesis, optimizer_step, pack_torch,
    synthesis_arrays, unpack_torch,
)
from archiver.model.crops import CropSampler  # noqa: E402
from benchmarks.refine_headroom import decoded_mse  # noqa: E402
from benchmarks.regimes import build_regime  # noqa: E402

#: Crop side in pixels (smaller images give smaller crops: a multiple of the coarsest cell).
JOINT_CROP = 64
#: Crops per step.
JOINT_BATCH = 8
#: Adam's first step for the latents, in quantization steps (the relaxation's: 0.1; 0.2 was worse).
JOINT_LATENT_LR = 0.1
#: Adam's first step for the synthesis and context network (pack's fine-tuning rate).
JOINT_NET_LR = 2e-4
#: Fraction of the time during which the synthesis sees noisy latents instead of rounded ones.
JOINT_NOISE_FRACTION = 0.5


class JointLatents:
    """Every image's padded pixels (uint8) and continuous packed latent (a parameter), with the
    crops a step draws."""

    def __init__(self, codec: PyramidCodec, images: list[np.ndarray], quality: int, seed: int) -> None:
        spec, s = codec.spec, codec.spec.stride
        steps = codec.steps(quality).detach()
        self.pixels: list[torch.Tensor] = []  # (3, H', W') uint8
        self.valid: list[tuple[int, int]] = []
        self.latents: list[torch.Tensor] = []  # (1, C, H'/s, W'/s) float32, requires grad
        for rgb in images:
            padded, valid = padded_image(codec, rgb)
            with torch.no_grad():
                z = pack_torch(spec, [g / steps[i] for i, g in enumerate(codec.encoder(padded))])
            self.pixels.append(torch.round(padded[0] * 255.0).to(torch.uint8))
            self.valid.append(valid)
            self.latents.append(z.requires_grad_(True))
        self.stride = s
        smallest = min(min(p.shape[-2:]) for p in self.pixels)
        self.crop = max(s, min(JOINT_CROP, smallest // s * s))
        cells = np.array([(p.shape[-2] // s) * (p.shape[-1] // s) for p in self.pixels], dtype=np.float64)
        self.weights = cells / cells.sum()
        self.rng = np.random.default_rng([seed, 0x101])

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixels (n, 3, c, c) in [0, 1], their latents (n, C, c/s, c/s) with gradient to the
        parameters, mask (n, 1, c, c): 1 on pixels of the image, 0 on its padding)."""
        s, c = self.stride, self.crop
        xs, zs, ms = [], [], []
        for k in self.rng.choice(len(self.pixels), size=n, p=self.weights):
            p, z, (h, w) = self.pixels[k], self.latents[k], self.valid[k]
            i = int(self.rng.integers(0, (p.shape[-2] - c) // s + 1)) * s
            j = int(self.rng.integers(0, (p.shape[-1] - c) // s + 1)) * s
            xs.append(p[:, i : i + c, j : j + c])
            zs.append(z[0, :, i // s : (i + c) // s, j // s : (j + c) // s])
            rows = (torch.arange(i, i + c) < h).view(-1, 1)
            cols = (torch.arange(j, j + c) < w).view(1, -1)
            ms.append((rows & cols)[None])
        return torch.stack(xs).float().div_(255.0), torch.stack(zs), torch.stack(ms).float()

    def continuous(self, k: int) -> torch.Tensor:
        """Image ``k``'s latent (1, C, h, w), detached."""
        return self.latents[k].detach()


def joint_optimize(codec: PyramidCodec, joint: JointLatents, quality: int, lmbda: float, seconds: float,
                   max_steps: int | None = None) -> dict:  # fmt: skip
    """Optimize ``joint``'s latents with ``codec``'s synthesis and context network for ``seconds``
    (or ``max_steps``); the encoder and the quantization steps stay. Returns a summary: steps,
    seconds, and the mean loss, PSNR (of the mean MSE) and bpp of the last tenth of the steps."""
    nets = list(codec.synthesis.parameters()) + list(codec.context.parameters())
    for p in codec.parameters():
        p.requires_grad_(False)
    for p in nets:
        p.requires_grad_(True)
    net_opt = torch.optim.Adam(nets, lr=JOINT_NET_LR)
    latent_opt = torch.optim.Adam(joint.latents, lr=JOINT_LATENT_LR)
    steps = codec.steps(quality).detach()
    log: list[tuple[float, float, float]] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds and len(log) < (max_steps or math.inf):
        frac = elapsed / seconds
        anneal = 0.5 * (1.0 + math.cos(math.pi * frac))
        net_opt.param_groups[0]["lr"], latent_opt.param_groups[0]["lr"] = JOINT_NET_LR * anneal, JOINT_LATENT_LR * anneal
        x, z, mask = joint.batch(JOINT_BATCH)
        loss, mse, bpp = _loss(codec, steps, x, z, mask, lmbda, noisy_synthesis=frac < JOINT_NOISE_FRACTION)
        net_opt.zero_grad(set_to_none=True)
        latent_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(nets, 1.0)
        net_opt.step()
        latent_opt.step()
        log.append((float(loss.item()), float(mse.item()), float(bpp.item())))
    for p in codec.parameters():
        p.requires_grad_(True)
    return _summary(log, time.monotonic() - started)


def _loss(codec: PyramidCodec, steps: torch.Tensor, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
          lmbda: float, noisy_synthesis: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(λ·255²·MSE + bpp, MSE, bpp) of one batch; MSE and bpp per pixel of the images (not padding)."""
    grids = unpack_torch(codec.spec, z)
    noisy = [g + torch.empty_like(g).uniform_(-0.5, 0.5) for g in grids]
    seen = noisy if noisy_synthesis else [g + (torch.round(g) - g).detach() for g in grids]
    x_hat = codec.synthesis([g * steps[i] for i, g in enumerate(seen)])
    pixels = mask.sum().clamp_min(1.0)
    mse = (((x_hat - x) ** 2) * mask).sum() / (3.0 * pixels)
    params = codec.context([torch.round(g).detach() for g in grids])
    bits = sum(laplace_bits(r, mu, ls).sum() for r, (mu, ls) in zip(noisy, params))
    bpp = bits / pixels
    return lmbda * 255.0**2 * mse + bpp, mse, bpp


def _summary(log: list[tuple[float, float, float]], seconds: float) -> dict:
    out: dict = {"steps": len(log), "seconds": round(seconds, 3)}
    if log:
        loss, mse, bpp = (float(np.mean(v)) for v in zip(*log[-max(1, len(log) // 10) :]))
        out["last"] = {"loss": round(loss, 5), "psnr": round(10 * math.log10(1.0 / max(mse, 1e-12)), 3), "bpp": round(bpp, 5)}
    return out


def finetune(codec: PyramidCodec, images: list[np.ndarray], quality: int, seconds: float) -> int:
    """Pack's fine-tuning steps (:func:`~archiver.codecs.pyramid.train.optimizer_step`, its crops,
    batch and rate) from the base for ``seconds``, without its convergence checks; returns the steps."""
    sampler = CropSampler(images, PYRAMID_CROP, np.random.default_rng(0))
    optimizer = torch.optim.Adam(codec.parameters(), lr=PYRAMID_FINETUNE_LR)
    steps, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        optimizer_step(codec, optimizer, sampler.batch(PYRAMID_BATCH), quality, PYRAMID_LAMBDAS[quality])
        steps += 1
    return steps


def measure(codec: PyramidCodec, images: list[np.ndarray], quality: int, trials: int, joint: JointLatents | None) -> dict:
    """Search (after relaxation unless ``joint``) every crop's latent; bpp, PSNRs and loss."""
    codec.eval()
    lmbda, (tile, halo) = PYRAMID_LAMBDAS[quality], pyramid_tiling(codec.spec.stride)
    synth = int8_synthesis(codec, synthesis_arrays(codec, quality))
    coder, counter = PackedPyramidCoder(codec.spec, context_net(codec)), HistogramCounter()
    errors, psnrs, pixels, started = [], [], 0, time.monotonic()
    for k, rgb in enumerate(images):
        if joint is None:
            (padded, z), valid = encode_continuous(codec, rgb, quality)
        else:
            (padded, valid), z = padded_image(codec, rgb), joint.continuous(k)
        z = refine_continuous(codec, synth, padded, z, valid, lmbda, trials, tile, halo, relax=None if joint is None else 0)
        latent = quantize_continuous(z)
        errors.append(decoded_mse(synth, latent, rgb))
        psnrs.append(10 * math.log10(255**2 / max(errors[-1], 1e-10)))
        coder.count(latent, counter)
        pixels += rgb.shape[0] * rgb.shape[1]
    bpp, mse = counter.ideal_bits(counter.tables()) / pixels, float(np.mean(errors))
    return {"bpp": round(bpp, 4), "psnr": round(float(np.mean(psnrs)), 3), "psnr_of_mean_mse": round(10 * math.log10(255**2 / mse), 3),
            "loss": round(lmbda * mse + bpp, 4), "refine_seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64, help="heldout dataset crops (128²), the first N")
    ap.add_argument("--quality", type=int, default=8)
    ap.add_argument("--finetune", type=float, default=77.0, help="seconds of fine-tuning (both variants)")
    ap.add_argument("--joint", type=float, default=90.0, help="seconds of the joint optimization")
    ap.add_argument("--trials", type=int, default=30, help="search trials per tile")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = PYRAMID_PRESETS["default"]
    base = find_pyramid_base(spec)
    folder = Path("/tmp/regime-dataset-heldout")
    if not folder.exists():
        build_regime("dataset", None, folder, split="heldout")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))[: args.images]]
    codec = PyramidCodec(spec)
    codec.load_state_dict(base.state_dict())
    steps = finetune(codec, images, args.quality, args.finetune)
    tuned = copy.deepcopy(codec)
    rows = [{"variant": "usual", "finetune_steps": steps, **measure(codec, images, args.quality, args.trials, None)}]
    print(json.dumps(rows[-1]), flush=True)
    joint = JointLatents(tuned, images, args.quality, seed=0)
    summary = joint_optimize(tuned, joint, args.quality, PYRAMID_LAMBDAS[args.quality], args.joint)
    rows.append({"variant": "joint", "finetune_steps": steps, "joint": summary, **measure(tuned, images, args.quality, args.trials, joint)})
    print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    record = {
        "command": "python benchmarks/joint_latents.py " + " ".join(sys.argv[1:]), "commit": commit.stdout.strip(),
        "machine": machine(), "base": base.id, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "images": len(images), "quality": args.quality, "finetune_seconds": args.finetune, "joint_seconds": args.joint,
        "rows": rows,
    }  # fmt: skip
    stem = "joint-latents" + (f"-{args.tag}" if args.tag else "")
    out = REPO / "benchmarks" / "results"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{stem}.md").write_text(report(record) + "\n")
    print(report(record))
    return 0


def report(record: dict) -> str:
    m = record["machine"]
    lines = [
        "# Joint optimization of latents and decoder against pack's relaxation", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}, commit {record['commit']}, machine: {m['platform']}, {m['cores']} cores",
        f"- base `{record['base']}`, {record['images']} heldout dataset crops of 128², `--quality` {record['quality']};"
        f" both fine-tuned for {record['finetune_seconds']:.0f} s; bpp: the integer coder's ideal bits", "",
        "| variant | bpp | PSNR (dB, mean) | PSNR of the mean MSE | loss | refinement (s) | joint (s) |", "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in record["rows"]:
        joint = r.get("joint", {}).get("seconds", 0)
        lines.append(f"| {r['variant']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['psnr_of_mean_mse']:.2f} | {r['loss']:.4f} |"
                     f" {r['refine_seconds']:.0f} | {joint:.0f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
