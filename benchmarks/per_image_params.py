"""Would per-image parameters pay? A probe of issue 34's item 2 before any format work.

    python benchmarks/per_image_params.py [--images 4] [--qualities 4] [--steps 300]
        [--variants latents,gains,tail,gains+tail] [--split train] [--finetune S] [--tag T]

Each image's packed latent is annealed as pack anneals it (C3's recipe, :mod:`archiver.codecs.pyramid.anneal`:
soft rounding with noise, then straight-through), starting from the shipped base's encoder, through
the base's int8 synthesis at the quality's trained steps, with the level's λ; with ``--finetune S``
the base is first fine-tuned on the photos for S seconds as pack fine-tunes it (every variant of a
quality then shares that decoder: compare variants within one run, as the fine-tuning's step count
depends on the machine's speed). Variants add per-image parameters, optimized jointly with the latent:

- ``latents``: nothing else (the reference: what pack does);
- ``gains``: one quantization gain per level (log2, coded in 1/16 octaves as ``--target-psnr``'s
  one gain is; 8 bits each counted);
- ``tail``: additive deltas to the synthesis' last 1×1 layer and its 3×3 refinement layers
  (219 numbers with the default spec), quantized to :data:`DELTA_STEP` and counted as signed
  exp-Golomb codes (what a simple coder would spend); their rate is in the loss through a smooth
  proxy of that count;
- ``last``, ``refine``: the tail's last 1×1 layer alone (51 numbers), its 3×3 layers alone (168);
- ``colour``: a 3×3 colour matrix and offset added after the synthesis (12 numbers: what a decoder
  could apply after the runtime, per image, at 12 multiply-adds a pixel);
- ``fit``: the latent annealed alone, then the last layer fitted to it by least squares (what a
  pack could do after any refinement);
- ``a+b``: several of them.

Measured per image with the real rounding of everything: PSNR of the synthesis' output, the
latent's bits under the wavefront coder's ideal bits (tables counted over the images of the
variant), plus the parameters' bits, and the loss λ·MSE + bpp the optimization minimises.
Writes ``benchmarks/results/per-image-params[-T].{json,md}``. Uses the ``album`` regime (whole
photos: where a few hundred bytes of parameters are cheapest per pixel).
"""

from __future__ import annotations

import argparse
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
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from archiver.bench.compare import machine  # noqa: E402
from archiver.codecs.pyramid.anneal import (  # noqa: E402
    LR as LR_LATENT, REFRESH, AnnealSchedule, _LossOf, anneal_step, kumaraswamy_noise, soft_round,
)
from archiver.codecs.pyramid.coder import HistogramCounter, PackedPyramidCoder  # noqa: E402
from archiver.codecs.pyramid.export import unpack_torch  # noqa: E402
from archiver.codecs.pyramid.fastsynth import OptimSynthesis  # noqa: E402
from archiver.codecs.pyramid.infer import encode_continuous  # noqa: E402
from archiver.codecs.pyramid.levels import LAMBDAS  # noqa: E402
from archiver.codecs.pyramid.train import context_net, int8_synthesis, synthesis_arrays  # noqa: E402
from archiver.model.prior import quantize_ste  # noqa: E402
from benchmarks.refine_headroom import frozen_base  # noqa: E402
from benchmarks.regimes import build_regime  # noqa: E402

#: Quantization step of the tail deltas (the int8 synthesis' weights are of order 0.1–1).
DELTA_STEP = 1.0 / 256
#: Bits counted per level gain (a 1/16-octave code of ±6 octaves fits in 8).
GAIN_BITS = 8
#: Adam's steps for the log2 gains and the deltas (the latent's and the schedule are the annealing's own).
LR_GAIN, LR_DELTA = 0.01, 0.002


def _round_ste(x: torch.Tensor, step: float) -> torch.Tensor:
    return x + (torch.round(x / step) * step - x).detach()


def exp_golomb_bits(q: torch.Tensor) -> torch.Tensor:
    """Bits of signed exp-Golomb (order 0) codes of the integers ``q``: 2·⌊log2(2|q|+1)⌋ + 1."""
    return (2 * torch.floor(torch.log2(2 * q.abs() + 1)) + 1).sum()


class PerImageSynth(nn.Module):
    """The int8 synthesis (:class:`OptimSynthesis`' weights) of one image with its own level gains
    and tail deltas (zero at the start)."""

    def __init__(self, optim: OptimSynthesis, parts: set[str], step: float = DELTA_STEP) -> None:
        super().__init__()
        self.o, self.parts, self.step = optim, parts, step  # step: the deltas' quantization step
        self.levels = optim.spec.levels
        self.gains = "gains" in parts
        last, refine = bool(parts & {"tail", "last", "fit"}), bool(parts & {"tail", "refine"})
        self.s = nn.Parameter(torch.zeros(self.levels), requires_grad=self.gains)
        w, b = optim.chain[-2], optim.chain[-1]
        self.dw = nn.Parameter(torch.zeros_like(w), requires_grad=last)
        self.db = nn.Parameter(torch.zeros_like(b), requires_grad=last)
        self.dconv = nn.ParameterList()
        for _, conv in optim.rest:
            self.dconv.append(nn.Parameter(torch.zeros_like(conv.weight), requires_grad=refine))
            self.dconv.append(nn.Parameter(torch.zeros_like(conv.bias), requires_grad=refine))
        colour = "colour" in parts
        self.dm = nn.Parameter(torch.zeros(3, 3), requires_grad=colour)
        self.dc = nn.Parameter(torch.zeros(3), requires_grad=colour)

    def deltas(self) -> list[torch.Tensor]:
        """The trained deltas (tail layers and colour matrix, as the variant asks)."""
        return [d for d in (self.dw, self.db, *self.dconv, self.dm, self.dc) if d.requires_grad]

    def param_bits(self, hard: bool) -> torch.Tensor:
        """Bits of the per-image parameters: exact exp-Golomb counts when ``hard``, else a smooth
        proxy (1 + 2·log2(1 + |d|/step) per number) the optimizer can follow."""
        bits = torch.zeros(())
        if self.gains:
            bits = bits + GAIN_BITS * self.levels
        for d in self.deltas():
            if hard:
                bits = bits + exp_golomb_bits(torch.round(d.detach() / self.step))
            else:
                bits = bits + (1 + 2 * torch.log2(1 + d.abs() / self.step)).sum()
        return bits

    def forward(self, packed: torch.Tensor, quantized: bool) -> torch.Tensor:
        o = self.o
        s = _round_ste(self.s, 1 / 16) if quantized else self.s
        grids = unpack_torch(o.spec, packed)
        n, _, height, width = grids[0].shape
        cols = []
        for level, g in enumerate(grids):
            g = g * (o.steps[level] * torch.exp2(s[level]))
            if level:
                a_h, a_wt = o._matrices(g.shape[-2], g.shape[-1], height // g.shape[-2], g.device)
                g = torch.matmul(torch.matmul(a_h, g), a_wt)
            cols.append(g.reshape(n, -1, height * width))
        h = torch.cat(cols, 1)
        chain = o.chain
        for k in range(0, len(chain) - 2, 2):
            h = F.leaky_relu(torch.matmul(chain[k], h) + chain[k + 1][:, None], o.slope)
        dw, db = (_round_ste(self.dw, self.step), _round_ste(self.db, self.step)) if quantized else (self.dw, self.db)
        x = (torch.matmul(chain[-2] + dw, h) + (chain[-1] + db)[:, None]).reshape(n, -1, height, width)
        for k, (layer, conv) in enumerate(o.rest):
            dcw, dcb = self.dconv[2 * k], self.dconv[2 * k + 1]
            if quantized:
                dcw, dcb = _round_ste(dcw, self.step), _round_ste(dcb, self.step)
            y = F.conv2d(x, conv.weight + dcw, conv.bias + dcb, padding=conv.padding)
            if layer.act:
                y = F.leaky_relu(y, o.slope)
            x = x + y if layer.residual else y
        if self.dm.requires_grad:
            dm, dc = (_round_ste(self.dm, self.step), _round_ste(self.dc, self.step)) if quantized else (self.dm, self.dc)
            x = x + torch.einsum("oc,nchw->nohw", dm, x) + dc[None, :, None, None]
        return x + 0.5


class _Loss(_LossOf):
    """The annealing's own loss (:class:`~archiver.codecs.pyramid.anneal._LossOf`: λ·255²·MSE +
    latent bits / pixel, the context refreshed as pack refreshes it) through the image's
    :class:`PerImageSynth`, plus its parameters' bits / pixel."""

    def __init__(self, codec, synth: PerImageSynth, target, valid, lmbda) -> None:
        self.per_image, self.quantized = synth, False
        super().__init__(codec, lambda y_hat: synth(y_hat, self.quantized), target, valid, lmbda)

    def __call__(self, y_hat, y, refresh: bool, quantized: bool):  # type: ignore[override]
        self.quantized = quantized
        pixels = self.h * self.w
        return super().__call__(y_hat, y, refresh)[0] + self.per_image.param_bits(False) / pixels


def fit_last(optim: OptimSynthesis, latent: torch.Tensor, target, valid,
             delta_step: float = DELTA_STEP) -> PerImageSynth:
    """The last layer's deltas that minimise the MSE of the fixed integer ``latent`` (least squares:
    the layer is followed only by linear layers, so the loss is quadratic in them; L-BFGS)."""
    synth = PerImageSynth(optim, {"last"}, delta_step)
    h, w = valid
    opt = torch.optim.LBFGS(synth.deltas(), lr=1.0, max_iter=50, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = ((synth(latent, False)[..., :h, :w] - target[..., :h, :w]) ** 2).mean() * 255.0**2
        loss.backward()
        return loss

    opt.step(closure)
    return synth


def optimize(codec, optim: OptimSynthesis, target, z, valid, lmbda: float, steps: int, parts: set[str],
             delta_step: float = DELTA_STEP):
    """The image's integer latent and its :class:`PerImageSynth` after ``steps`` annealed steps
    (``fit``: the latent annealed alone, then :func:`fit_last`)."""
    if "fit" in parts:
        latent, _ = optimize(codec, optim, target, z, valid, lmbda, steps, parts - {"fit"}, delta_step)
        return latent, fit_last(optim, latent, target, valid, delta_step)
    synth = PerImageSynth(optim, parts, delta_step)
    loss_of = _Loss(codec, synth, target, valid, lmbda)
    y = z.detach().clone().requires_grad_(True)
    groups = [{"params": [y], "lr": LR_LATENT, "base": LR_LATENT}]
    if synth.gains:
        groups.append({"params": [synth.s], "lr": LR_GAIN, "base": LR_GAIN})
    if synth.deltas():
        groups.append({"params": synth.deltas(), "lr": LR_DELTA, "base": LR_DELTA})
    opt = torch.optim.Adam(groups)
    best, best_loss, best_state = torch.round(y.detach()), float("inf"), None
    for step in range(steps):
        at = anneal_step(AnnealSchedule(), step, steps)  # pack's schedule, every group scaled alike
        scale = at.lr_scale
        if at.soft:
            y_hat = soft_round(soft_round(y, at.t) + kumaraswamy_noise(y, at.a), at.t)
            loss = loss_of(y_hat, y, at.k % REFRESH == 0, quantized=False)
        else:
            loss = loss_of(quantize_ste(y), y, at.k % REFRESH == 0, quantized=True)
            if loss.item() < best_loss:  # the rounded latent with the rounded parameters
                best_loss, best = loss.item(), torch.round(y.detach())
                best_state = {n: p.detach().clone() for n, p in synth.named_parameters()}
        for g in opt.param_groups:
            g["lr"] = g["base"] * scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if best_state is not None:
        with torch.no_grad():
            for n, p in synth.named_parameters():
                p.copy_(best_state[n])
    return best, synth


def measure(codec, quality: int, images, variant: str, steps: int, delta_step: float = DELTA_STEP) -> dict:
    """One variant's bpp (latent ideal bits + parameter bits), mean PSNR and loss over ``images``."""
    synth8 = int8_synthesis(codec, synthesis_arrays(codec, quality))
    for p in synth8.parameters():
        p.requires_grad_(False)
    optim = OptimSynthesis(synth8)
    lmbda = LAMBDAS[quality]
    parts = set(variant.split("+")) - {"latents"}
    coder, counter = PackedPyramidCoder(codec.spec, context_net(codec)), HistogramCounter()
    started, psnrs, pixels, param_bits, sgains = time.monotonic(), [], 0, 0.0, []
    for rgb in images:
        torch.manual_seed(0)
        (padded, z), valid = encode_continuous(codec, rgb, quality)
        latent, synth = optimize(codec, optim, padded, z, valid, lmbda, steps, parts, delta_step)
        with torch.no_grad():
            out = synth(latent, quantized=True)[0].clamp(0, 1)
        out = torch.round(out * 255).permute(1, 2, 0).numpy()[: rgb.shape[0], : rgb.shape[1]]
        mse = float(np.mean((out - rgb.astype(np.float64)) ** 2))
        psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        ints = torch.clamp(latent, -(1 << 15), 1 << 15)[0].to(torch.int32).numpy()
        coder.count(ints, counter)
        param_bits += float(synth.param_bits(hard=True))
        sgains.append([round(float(v), 3) for v in torch.round(synth.s.detach() * 16) / 16])
        pixels += rgb.shape[0] * rgb.shape[1]
        print(f"  {variant} q{quality} image {len(psnrs)}: {psnrs[-1]:.2f} dB", flush=True)
    latent_bits = counter.ideal_bits(counter.tables())
    bpp = (latent_bits + param_bits) / pixels
    mse = float(np.mean([255**2 / 10 ** (p / 10) for p in psnrs]))
    return {"quality": quality, "variant": variant, "steps": steps, "bpp": bpp, "param_bpp": param_bits / pixels,
            "psnr": float(np.mean(psnrs)), "loss": round(lmbda * mse + bpp, 5), "gains": sgains,
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def finetuned(codec, spec, images, quality: int, seconds: float):
    """The base fine-tuned on ``images`` for ``seconds`` as pack fine-tunes it (its recipe from a
    base, no stored-delta rate), frozen."""
    from archiver.codecs.pyramid.train import PyramidRecipe, train_pyramid
    from archiver.config import config_for_quality

    cfg = config_for_quality(quality, time_limit=seconds, codec="pyramid", device="cpu")
    torch.manual_seed(0)
    result = train_pyramid([np.asarray(im) for im in images], cfg, spec,
                           recipe=PyramidRecipe(coarse_steps=0, start=codec.state_dict()))  # fmt: skip
    tuned = result.codec.cpu().eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    print(f"  fine-tuned q{quality}: {result.steps} steps in {result.seconds:.0f} s", flush=True)
    return tuned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4, help="album photos of the split, the first N")
    ap.add_argument("--qualities", default="4")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", default="latents,gains,tail,gains+tail")
    ap.add_argument("--split", default="train", choices=("heldout", "train", "all"),
                    help="train: for choosing a design (never tune on heldout); all: any photos (smoke tests)")
    ap.add_argument("--src", default=None, help="source photos (default: the shared dev set)")
    ap.add_argument("--finetune", type=float, default=0.0,
                    help="seconds of pack's fine-tuning on the images first (per quality; 0: the base as shipped)")
    ap.add_argument("--delta-step", type=float, default=DELTA_STEP,
                    help="quantization step of the deltas (finer costs about 1 bit a number per halving)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    base, codec = frozen_base()
    folder = Path(f"/tmp/regime-album-{args.split}")
    paths = build_regime("album", args.src, folder, split=args.split, limit=args.images)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    rows = []
    for q in (int(v) for v in args.qualities.split(",")):
        tuned = finetuned(codec, codec.spec, images, q, args.finetune) if args.finetune > 0 else codec
        for variant in args.variants.split(","):
            rows.append(measure(tuned, q, images, variant, args.steps, args.delta_step))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "gains"}), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    record = {"command": "python benchmarks/per_image_params.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit.stdout.strip(), "machine": machine(), "base": base.id, "split": args.split,
              "finetune_s": args.finetune, "delta_step": args.delta_step, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "images": [p.name for p in paths], "rows": rows}  # fmt: skip
    stem = "per-image-params" + (f"-{args.tag}" if args.tag else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{stem}.md").write_text(report(record) + "\n")
    print(report(record))
    return 0


def report(record: dict) -> str:
    """Markdown: each variant's bpp, PSNR and loss, and the loss change against ``latents``."""
    lines = [f"# Per-image parameters: a probe ({record['date'][:10]}, commit {record['commit']})", "",
             f"`{record['command']}` on {record['machine'].get('cpu', '?')} × {record['machine'].get('cores', '?')} "
             f"cores; {len(record['images'])} album photos of the "
             f"{record['split']} split, base {record['base']}, "
             + (f"fine-tuned on them for {record['finetune_s']:g} s. " if record.get("finetune_s") else "no fine-tuning. ")
             + f"Deltas quantized to {record.get('delta_step', 1 / 256):.6g}. Loss = λ·MSE + bpp "
             "(parameters' bits included).", "",
             "| quality | variant | steps | bpp | of which parameters | PSNR (dB) | loss | loss vs latents | s |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in record["rows"]:
        ref = next((x for x in record["rows"] if x["quality"] == r["quality"] and x["variant"] == "latents"), None)
        rel = f"{100 * (r['loss'] / ref['loss'] - 1):+.2f} %" if ref else "–"
        lines.append(f"| {r['quality']} | {r['variant']} | {r['steps']} | {r['bpp']:.4f} | {r['param_bpp']:.4f} | "
                     f"{r['psnr']:.2f} | {r['loss']:.4f} | {rel} | {r['seconds']} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
