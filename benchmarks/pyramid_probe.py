"""Quick probe of the ``pyramid`` codec's capacity: train on a regime for a fixed time, report PSNR and
the context model's estimated bpp on the whole set (rounded latents, no refinement, float weights).

``python benchmarks/pyramid_probe.py --regime dataset --split heldout --seconds 300 --lmbda 0.05``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.regimes import build_regime  # noqa: E402
from archiver.codecs.pyramid.plan import PyramidSpec  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec  # noqa: E402


def load(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def evaluate(codec: PyramidCodec, images: list[np.ndarray], quality: int, coarse_from: int = 0) -> tuple[float, float]:
    codec.eval()
    se, bits, px = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(images), 16):
            x = torch.from_numpy(np.stack(images[i : i + 16])).permute(0, 3, 1, 2).float() / 255
            x_hat, b = codec(x, quality, noise=False, coarse_from=coarse_from)
            se += float(((torch.round(x_hat.clamp(0, 1) * 255) - x * 255) ** 2).sum())
            bits += float(b)
            px += x.shape[0] * x.shape[2] * x.shape[3]
    codec.train()
    return 10 * math.log10(255**2 / (se / px / 3)), bits / px


def refine_eval(codec, images, quality, lmbda, steps):
    """Optimise the scaled grids of ``images`` directly (Adam, STE rounding), then evaluate."""
    for p in codec.parameters():
        p.requires_grad_(False)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    st = codec.steps(quality)
    with torch.no_grad():
        grids = [g / st[i] for i, g in enumerate(codec.encoder(x))]
    var = [g.clone().requires_grad_(True) for g in grids]
    opt = torch.optim.Adam(var, lr=0.05)
    px = x.shape[0] * x.shape[2] * x.shape[3]
    for k in range(steps):
        hard = [v + (torch.round(v) - v).detach() for v in var]
        x_hat = codec.synthesis([h * st[i] for i, h in enumerate(hard)])
        params = codec.context([torch.round(v).detach() for v in var])
        from archiver.codecs.pyramid.model import laplace_bits
        bits = sum(laplace_bits(h, mu, ls).sum() for h, (mu, ls) in zip(hard, params))
        loss = lmbda * 255**2 * torch.mean((x_hat - x) ** 2) + bits / px
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k % 50 == 0:
            print(f"refine {k} loss {float(loss):.3f} bpp {float(bits)/px:.3f}", flush=True)
    with torch.no_grad():
        hard = [torch.round(v) for v in var]
        x_hat = codec.synthesis([h * st[i] for i, h in enumerate(hard)])
        params = codec.context(hard)
        bits = sum(laplace_bits(h, mu, ls).sum() for h, (mu, ls) in zip(hard, params))
        mse = float(((torch.round(x_hat.clamp(0, 1) * 255) - x * 255) ** 2).mean())
    return 10 * math.log10(255**2 / mse), float(bits) / px


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--regime", default="dataset")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--lmbda", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--spec", default="{}")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--save", default=None)
    ap.add_argument("--coarse-first", type=float, default=0.0, help="fraction of the time with level 0 held at zero")
    ap.add_argument("--no-context", action="store_true", help="ablation: the context MLP sees only the level")
    ap.add_argument("--first-kernel", type=int, default=1, help="ablation: kernel of the synthesis' first layer (3: spatial patterns from one latent)")
    ap.add_argument("--zero-levels", default="", help="ablation: comma-separated levels held at zero throughout (training and evaluation)")
    ap.add_argument("--init-steps", default=None, help="comma-separated initial quantization steps per level")
    ap.add_argument("--load", default=None)
    ap.add_argument("--refine", type=int, default=0, help="latent refinement steps on the first 32 images")
    args = ap.parse_args()
    torch.manual_seed(0)
    folder = Path(f"/tmp/regime-{args.regime}-{args.split}")
    if not folder.exists():
        build_regime(args.regime, None, folder, split=args.split, limit=args.limit)
    images = load(folder)
    spec = PyramidSpec.from_dict(json.loads(args.spec))
    if args.first_kernel != 1:  # probe only: the stored spec has no such field
        from dataclasses import replace

        plan = PyramidSpec.synthesis_plan
        PyramidSpec.synthesis_plan = lambda self: [replace(plan(self)[0], kernel=args.first_kernel)] + plan(self)[1:]
    codec = PyramidCodec(spec)
    if args.no_context:  # keep the level one-hot, zero every decoded-neighbour feature
        from archiver.codecs.pyramid.model import ContextModel

        plain = ContextModel.features

        def levels_only(self, grids, level, phase):
            f = plain(self, grids, level, phase)
            f[:, : f.shape[1] - self.spec.levels] = 0
            return f

        ContextModel.features = levels_only
    if args.zero_levels:  # a pyramid without these grids: they stay all zeros and cost next to no bits
        zero = {int(v) for v in args.zero_levels.split(",")}
        encode = codec.encoder.forward
        codec.encoder.forward = lambda x: [g * 0.0 if i in zero else g for i, g in enumerate(encode(x))]
    if args.init_steps:
        with torch.no_grad():
            codec.log_steps[:] = torch.log(torch.tensor([float(v) for v in args.init_steps.split(",")]))
    if args.load:
        codec.load_state_dict(torch.load(args.load))
    opt = torch.optim.Adam(codec.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    start, step = time.monotonic(), 0
    c = args.crop
    while time.monotonic() - start < args.seconds:
        idx = rng.integers(0, len(images), args.batch)
        crops = []
        for i in idx:
            im = images[i]
            y, x = rng.integers(0, im.shape[0] - c + 1), rng.integers(0, im.shape[1] - c + 1)
            crops.append(im[y : y + c, x : x + c])
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        coarse = 1 if time.monotonic() - start < args.coarse_first * args.seconds else 0
        x_hat, bits = codec(x, 4, coarse_from=coarse)
        mse = torch.mean((x_hat - x) ** 2)
        bpp = bits / (x.shape[0] * c * c)
        loss = args.lmbda * 255**2 * mse + bpp
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"step {step} t {time.monotonic()-start:.0f}s psnr {10*math.log10(1/float(mse)):.2f} bpp {float(bpp):.3f}", flush=True)
    if args.save:
        torch.save(codec.state_dict(), args.save)
    psnr, bpp = evaluate(codec, images, 4, coarse_from=1 if args.coarse_first >= 1 else 0)
    if args.refine:
        sub = images[:32]
        before = evaluate(codec, sub, 4)
        after = refine_eval(codec, sub, 4, args.lmbda, args.refine)
        print(json.dumps({"refine_steps": args.refine, "before": before, "after": after}))
    params = sum(p.numel() for n, p in codec.named_parameters() if not n.startswith("encoder"))
    # The training objective at this λ (PSNR on 8-bit output): lower is better, whatever the rate.
    loss = args.lmbda * 255**2 * 10 ** (-psnr / 10) + bpp
    print(json.dumps({"steps": step, "psnr": psnr, "latent_bpp": bpp, "loss": loss, "decoder_params": params,
                      "macs_per_px": spec.macs_per_pixel(), "lmbda": args.lmbda}))


if __name__ == "__main__":
    main()
