"""Optimization throughput of the per-image latent optimization: multiply–accumulates per second of
one step (forward and backward through the synthesis, the context model's rate), against the
machine's fp32 peak.

    python benchmarks/anneal_throughput.py [--images 16] [--side 128] [--steps 6]

A step is one step of the annealing's first stage (soft rounding, Kumaraswamy noise, soft rounding
again; the loss of :class:`archiver.codecs.pyramid.anneal._LossOf` with the context's parameters
kept between refreshes) on a batch of ``--images`` crops of ``--side``², its backward to the
latents, timed over ``--steps`` after one warm-up, several ways:

- ``before``: the synthesis as pack refined with it until 2026-12-06 (``PackedSynthesis``,
  contiguous NCHW tensors), the soft rounding and the rate through autograd, level by level
  (:class:`AutogradLoss`: the annealing's code of session 10);
- ``channels-last``: the same module and images in channels-last memory;
- ``fast``: :class:`archiver.codecs.pyramid.fastsynth.OptimSynthesis` (upsampling as matrices, the
  1×1 layers as one GEMM chain with its own backward);
- ``fast, memory kept``: the same after :func:`archiver.model.allocator.keep_freed_memory` (what
  pack does), which cannot be undone in the process, so it and the next run last;
- ``fused, memory kept``: what the annealing runs now: that synthesis, and the soft rounding with
  its noise and the rate over the packed latent each one operation with a hand-written backward
  (``anneal._SoftNoisy``, ``anneal._PackedBits``).

MAC/s counts the synthesis and context network's multiply–accumulates per pixel
(``PyramidReadSide.macs_per_pixel``: the spec's synthesis plus the context network) three times
(forward, and a backward about twice a forward), as the issue's estimate does. The peak: 2 cores ×
2 FMA units × 8 fp32 lanes × 2 flops × the clock (``--ghz``, 2.9 by default: about 190 GFLOP/s,
95 G MAC/s). Writes ``benchmarks/results/anneal-throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.compare import machine  # noqa: E402
from archiver.codecs.pyramid.anneal import _LossOf, _SoftNoisy, kumaraswamy_noise, soft_round  # noqa: E402
from archiver.codecs.pyramid.export import unpack_torch  # noqa: E402
from archiver.codecs.pyramid.model import laplace_bits  # noqa: E402
from archiver.codecs.pyramid.base import find_pyramid_base  # noqa: E402
from archiver.codecs.pyramid.fastsynth import OptimSynthesis  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec  # noqa: E402
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS, context_macs_per_pixel  # noqa: E402
from archiver.codecs.pyramid.train import int8_synthesis, pack_torch, synthesis_arrays  # noqa: E402
from archiver.model.allocator import keep_freed_memory  # noqa: E402
from benchmarks.rd import git_commit  # noqa: E402


class AutogradLoss(_LossOf):
    """The annealing's loss as session 10 computed it: the rate level by level through autograd."""

    def __call__(self, y_hat, y, refresh):
        if refresh or self.params is None:
            with torch.no_grad():
                self.params = self.codec.context([torch.round(g) for g in unpack_torch(self.codec.spec, y.detach())])
        x_hat = self.synth(y_hat)
        mse = ((x_hat[..., : self.h, : self.w] - self.targets[..., : self.h, : self.w]) ** 2).mean(dim=(1, 2, 3))
        grids = unpack_torch(self.codec.spec, y_hat)
        bits = sum(laplace_bits(g, mu, ls).sum(dim=(1, 2, 3)) for g, (mu, ls) in zip(grids, self.params))
        return self.lmbda * 255.0**2 * mse + bits / (self.h * self.w)


def seconds_per_step(codec, synth, x, z, steps: int, fused: bool) -> float:
    side, t, a = x.shape[-1], 0.2, 1.5
    loss = (_LossOf if fused else AutogradLoss)(codec, synth, x, (side, side), 0.013)
    y = z.clone().requires_grad_(True)

    def step(refresh: bool) -> None:
        if fused:
            y_hat = _SoftNoisy.apply(y, t, kumaraswamy_noise(y, a))
        else:
            y_hat = soft_round(y, t)
            y_hat = soft_round(y_hat + kumaraswamy_noise(y_hat, a), t)
        loss(y_hat, y, refresh).sum().backward()

    step(True)
    started = time.perf_counter()
    for k in range(steps):
        step(k % 10 == 0)
    return (time.perf_counter() - started) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--ghz", type=float, default=2.9)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    spec = PYRAMID_PRESETS["default"]
    codec = PyramidCodec(spec)
    codec.load_state_dict(find_pyramid_base(spec).state_dict())
    codec.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    synth = int8_synthesis(codec, synthesis_arrays(codec, 4))
    torch.manual_seed(0)
    x = torch.rand(args.images, 3, args.side, args.side)
    with torch.no_grad():
        z = pack_torch(spec, [g / codec.steps(4)[i] for i, g in enumerate(codec.encoder(x))])
    macs = spec.macs_per_pixel() + context_macs_per_pixel(spec)
    pixels = args.images * args.side**2
    peak = 2 * 2 * 8 * args.ghz * 1e9  # MAC/s: cores × FMA units × lanes × GHz
    ways = {
        "before": (synth, x),
        "channels-last": (copy.deepcopy(synth).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)),
        "fast": (OptimSynthesis(synth), x),
    }  # fmt: skip
    ways["fast, memory kept"] = ways["fast"]  # last: keep_freed_memory cannot be undone
    ways["fused, memory kept"] = ways["fast"]
    rows = []
    for name, (module, images) in ways.items():
        if name == "fast, memory kept":
            keep_freed_memory()
        s = seconds_per_step(codec, module, images, z, args.steps, fused=name.startswith("fused"))
        rate = 3 * macs * pixels / s
        rows.append({"way": name, "ms_per_step": round(1000 * s, 1), "mpx_per_s": round(pixels / s / 1e6, 3),
                     "gmac_per_s": round(rate / 1e9, 2), "of_peak": round(rate / peak, 4)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/anneal_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": git_commit(), "machine": machine(), "macs_per_pixel": macs, "pixels": pixels,
            "peak_gmac_per_s": peak / 1e9, "torch_threads": torch.get_num_threads(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    lines = [
        "# Optimization throughput: one annealing step (forward and backward)", "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}, commit {meta['commit']}, machine: {meta['machine']['platform']}, "
        f"{meta['machine']['cores']} cores, torch threads {meta['torch_threads']}",
        f"- {args.images} crops of {args.side}², {macs:.0f} MAC per pixel (synthesis and context network) × 3 for "
        f"forward and backward; peak {peak / 1e9:.0f} G MAC/s (2 cores × 2 FMA × 8 fp32 lanes × {args.ghz} GHz)", "",
        "| way | ms / step | Mpx / s | G MAC / s | of peak | vs before |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['way']} | {r['ms_per_step']} | {r['mpx_per_s']} | {r['gmac_per_s']} | "
                     f"{100 * r['of_peak']:.1f} % | {rows[0]['ms_per_step'] / r['ms_per_step']:.2f}× |")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "anneal-throughput.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    (args.out / "anneal-throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
