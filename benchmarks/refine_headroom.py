"""How much rate is left in the per-image latents, and which refinement finds it? The shipped base's
encoder, then per-image refinement of several kinds and lengths, measured on the same heldout (or, to choose a setting, train) crops
with the real integer coder.

    python benchmarks/refine_headroom.py [--images 16] [--qualities 2,4,8] [--variants adam:30,search:30,...] [--tag T]

Every variant starts from the base's encoder output (the pack default spec's base) at the level's
trained steps and refines each 128² crop alone through the int8 synthesis with the level's λ
(``config.PYRAMID_LAMBDAS``); no collection fine-tuning:

- ``adam:S``: what pack did before the integer search: S Adam steps of 0.05 quantization steps,
  straight-through rounding in the synthesis and the rate, the best latent seen kept
  (:func:`archiver.model.refine.refine_latent` without ``search``);
- ``search:S``: what pack does now (:func:`archiver.codecs.pyramid.infer.refine_continuous`): at most
  S trials of the gradient-guided integer search, after relaxation where λ calls for it;
- ``plain:S``: the search without relaxation (what pack did before it); ``relax:S``: the search
  after ``RELAX_PER_TRIAL``·S relaxation steps at every level;
- ``adam:0`` is the encoder's latent, rounded.

Rate: the wavefront coder's ideal bits for the crops' latents under tables counted from them
(:meth:`HistogramCounter.ideal_bits`; tables, model and container bytes not counted: the same for
every variant). Distortion: PSNR of the int8 synthesis' rounded output (torch; the ONNX runtime
gives the same pixels within ±1). ``--classic webp`` measures classic codecs on the same crops
(their whole files). Writes ``benchmarks/results/refine-headroom[-T].{json,md}``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from archiver.bench.compare import machine  # noqa: E402
from archiver.bench.metrics import bd_rate  # noqa: E402
from archiver.codecs.pyramid.coder import HistogramCounter, PackedPyramidCoder  # noqa: E402
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS  # noqa: E402
from archiver.codecs.pyramid.levels import LAMBDAS as PYRAMID_LAMBDAS  # noqa: E402
from archiver.codecs.pyramid.read import pyramid_tiling  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec  # noqa: E402
from archiver.codecs.pyramid.base import find_pyramid_base  # noqa: E402
from archiver.codecs.pyramid.infer import (  # noqa: E402
    RELAX_PER_TRIAL, encode_continuous, latent_bits, quantize_continuous, refine_continuous,
)
from archiver.codecs.pyramid.train import context_net, int8_synthesis, synthesis_arrays  # noqa: E402
from archiver.model.refine import refine_latent  # noqa: E402
from benchmarks.regimes import build_regime  # noqa: E402

#: Adam's step (quantization steps) in pack's refinement before the integer search.
ADAM_LR = 0.05


def adam_refine(codec, synth, padded, z, valid, lmbda: float, steps: int) -> torch.Tensor:
    """``adam:S`` (see the module doc): pack's refinement, tiled as pack tiles it, with Adam."""
    tile, halo = pyramid_tiling(codec.spec.stride)
    return refine_latent(synth, padded, z, lambda v: latent_bits(codec, v), lmbda, steps, valid, lr=ADAM_LR,
                         tile=tile, halo=halo, stride=codec.spec.stride)  # fmt: skip


def decoded_mse(synth, latent: np.ndarray, rgb: np.ndarray) -> float:
    """MSE (8-bit units²) of ``rgb`` against the int8 synthesis' rounded output of the packed integer
    ``latent``, over the image's own pixels (not the padding)."""
    with torch.no_grad():
        x_hat = synth(torch.from_numpy(latent)[None].float())[0]
    out = torch.round(x_hat.clamp(0, 1) * 255).permute(1, 2, 0).numpy()[: rgb.shape[0], : rgb.shape[1]]
    return float(np.mean((out - rgb.astype(np.float64)) ** 2))


def measure(codec, quality: int, images: list[np.ndarray], kind: str, steps: int) -> dict:
    """bpp (ideal bits of the wavefront coder) and mean PSNR of ``images`` refined by one variant."""
    arrays = synthesis_arrays(codec, quality)
    synth = int8_synthesis(codec, arrays)
    for p in synth.parameters():
        p.requires_grad_(False)
    lmbda = PYRAMID_LAMBDAS[quality]
    started = time.monotonic()
    torch.manual_seed(0)
    if kind.startswith("anneal"):
        zs = _annealed(codec, synth, quality, images, kind, steps)
    else:
        zs = [_refined(codec, synth, quality, lmbda, rgb, kind, steps) for rgb in images]
    return _row(codec, synth, quality, f"{kind}:{steps}", images, zs, started)


def _refined(codec, synth, quality: int, lmbda: float, rgb, kind: str, steps: int) -> torch.Tensor:
    """One crop's continuous latent after ``adam``, ``search``, ``plain`` or ``relax`` (see the module doc)."""
    (padded, z), valid = encode_continuous(codec, rgb, quality)
    if kind == "adam":
        return adam_refine(codec, synth, padded, z, valid, lmbda, steps)
    if kind in ("search", "plain", "relax"):
        relax = {"search": None, "plain": 0, "relax": RELAX_PER_TRIAL * steps}[kind]
        return refine_continuous(codec, synth, padded, z, valid, lmbda, steps, *pyramid_tiling(codec.spec.stride), relax=relax)
    raise SystemExit(f"unknown variant {kind!r}: adam, search, plain, relax or anneal*")


def _row(codec, synth, quality: int, variant: str, images, zs, started: float) -> dict:
    """One measured point of the crops' continuous latents ``zs``: bpp (ideal bits of the wavefront
    coder under tables counted from them), mean PSNR, and ``loss``: λ·MSE (8-bit units²) + bpp, what
    refinement minimises."""
    coder, counter = PackedPyramidCoder(codec.spec, context_net(codec)), HistogramCounter()
    psnrs, pixels = [], 0
    for rgb, z in zip(images, zs):
        latent = quantize_continuous(z)
        psnrs.append(10 * math.log10(255**2 / max(decoded_mse(synth, latent, rgb), 1e-10)))
        coder.count(latent, counter)
        pixels += rgb.shape[0] * rgb.shape[1]
    bits = counter.ideal_bits(counter.tables())
    mse = float(np.mean([255**2 / 10 ** (p / 10) for p in psnrs]))
    return {"quality": quality, "variant": variant, "bpp": bits / pixels, "psnr": float(np.mean(psnrs)),
            "loss": round(PYRAMID_LAMBDAS[quality] * mse + bits / pixels, 4),
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


#: ``anneal*`` variants: how many crops are optimized in one batch.
ANNEAL_BATCH = 16


def _annealed(codec, synth, quality: int, images, kind: str, steps: int) -> list[torch.Tensor]:
    """The crops' latents by ``anneal:S`` (:func:`archiver.codecs.pyramid.anneal.anneal_latents`,
    batches of :data:`ANNEAL_BATCH` crops), ``annealsoft:S`` (no noise), ``annealsearch:S`` (then 30
    search trials per crop) or ``annealfast:S`` (a twice larger step)."""
    from archiver.codecs.pyramid.anneal import AnnealSchedule, anneal_latents

    schedule = AnnealSchedule(noise=kind != "annealsoft", lr=0.1 if kind == "annealfast" else AnnealSchedule().lr)
    lmbda = PYRAMID_LAMBDAS[quality]
    zs = []
    for first in range(0, len(images), ANNEAL_BATCH):
        encoded = [encode_continuous(codec, rgb, quality) for rgb in images[first : first + ANNEAL_BATCH]]
        padded = torch.cat([e[0][0] for e in encoded])
        valid = encoded[0][1]
        y = anneal_latents(codec, synth, padded, torch.cat([e[0][1] for e in encoded]), valid, lmbda, steps, schedule)
        for k in range(len(encoded)):
            zk = y[k : k + 1]
            if kind == "annealsearch":
                zk = refine_continuous(codec, synth, padded[k : k + 1], zk, valid, lmbda, 30,
                                       *pyramid_tiling(codec.spec.stride), relax=0)  # fmt: skip
            zs.append(zk)
    return zs


def classic_points(paths: list[Path], names: list[str]) -> list[dict]:
    from archiver.bench.classic import sweep

    result = sweep(paths, names, with_msssim=False)
    return [{"variant": p["codec"], "quality": p["setting"], "bpp": p["bpp"], "psnr": p["psnr"]} for p in result["points"]]


def frozen_base():
    """(the shipped base of the default spec, a :class:`PyramidCodec` with its weights, frozen)."""
    spec = PYRAMID_PRESETS["default"]
    base = find_pyramid_base(spec)
    codec = PyramidCodec(spec)
    codec.load_state_dict(base.state_dict())
    codec.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    return base, codec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16, help="heldout dataset crops (128²), the first N")
    ap.add_argument("--qualities", default="2,4,8")
    ap.add_argument("--variants", default="adam:0,adam:30,adam:100,search:30,search:100")
    ap.add_argument("--classic", default="webp", help="classic codecs on the same crops (comma-separated; empty: none)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"),
                    help="train: for choosing a setting (never tune on heldout)")
    args = ap.parse_args()
    base, codec = frozen_base()
    folder = Path(f"/tmp/regime-dataset-{args.split}")
    if not folder.exists():
        build_regime("dataset", None, folder, split=args.split)
    paths = sorted(folder.glob("*.png"))[: args.images]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    qualities = [int(q) for q in args.qualities.split(",")]
    rows = []
    for variant in args.variants.split(","):
        kind, steps = variant.split(":")
        for q in qualities:
            rows.append(measure(codec, q, images, kind, int(steps)))
            print(json.dumps(rows[-1]), flush=True)
    classic = classic_points(paths, [c for c in args.classic.split(",") if c]) if args.classic else []
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    record = {
        "command": "python benchmarks/refine_headroom.py " + " ".join(sys.argv[1:]),
        "commit": commit.stdout.strip(), "machine": machine(), "base": base.id,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "images": len(images),
        "rows": rows, "classic": classic, "split": args.split,
    }  # fmt: skip
    stem = "refine-headroom" + (f"-{args.tag}" if args.tag else "")
    out = REPO / "benchmarks" / "results"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{stem}.md").write_text(report(record, args.variants.split(",")) + "\n")
    print(report(record, args.variants.split(",")))
    return 0


def report(record: dict, variants: list[str]) -> str:
    """The markdown table: each variant's points and its BD-rate against pack's refinement and WebP."""
    curves = {v: [r for r in record["rows"] if r["variant"] == v] for v in variants}
    for r in record["classic"]:
        curves.setdefault(r["variant"], []).append(r)
    ref_name = "adam:30" if "adam:30" in curves else variants[0]
    ref = curves[ref_name]

    def bd(curve, other):
        if not other:
            return "–"
        v = bd_rate([p["bpp"] for p in curve], [p["psnr"] for p in curve], [p["bpp"] for p in other], [p["psnr"] for p in other])
        return "–" if v is None else f"{v:+.1f} %"

    m = record["machine"]
    lines = [
        "# Refinement headroom: the same crops' latents refined longer or differently", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}, commit {record['commit']}, machine: {m['platform']}, {m['cores']} cores",
        f"- base `{record['base']}` (no collection fine-tuning), {record['images']} {record.get('split', 'heldout')} dataset crops of 128²;"
        " bpp: the integer coder's ideal bits under tables counted from these latents", "",
        f"| variant | points (bpp @ dB) | seconds | BD-rate vs {ref_name} | BD-rate vs webp |", "|---|---|---|---|---|",
    ]  # fmt: skip
    webp = curves.get("webp")
    for name, curve in curves.items():
        pts = ", ".join(f"q{p['quality']} {p['bpp']:.3f} @ {p['psnr']:.2f}" for p in curve)
        secs = sum(p.get("seconds", 0) for p in curve)
        lines.append(f"| {name} | {pts} | {secs:.0f} | {bd(curve, ref)} | {bd(curve, webp)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
