"""Train the warm-start codecs shipped in ``src/archiver/model/weights/`` (the recipe, runnable).

    python scripts/pretrain.py --preset tiny --time-limit 25m
    python scripts/pretrain.py --codec pyramid --time-limit 3h --base-id b1

``--codec pyramid`` trains one variable-rate pyramid codec for every ``--quality`` (see
:func:`pretrain_pyramid`); it is resumable exactly and meant to run for hours: ``--time-limit`` is
the total over all runs, and a run continues from the checkpoint in ``--state`` (kept in the repo
so that later sessions add hours), then writes ``pyramid-<id>.npz``, the training log
(``benchmarks/results/pretrain-pyramid.json``) and its curve (``pretrain-curve.png``).

Trains one :data:`archiver.config.MODEL_PRESETS` architecture as ``pack`` would (same loss and
crops; a longer convergence window and one more learning-rate drop; no refinement, no denoiser) on the ``train`` half of ``../shared/data/dev``
(``benchmarks.regimes.split_of``: the ``heldout`` half is left for benchmarks), each photo at full
size and downscaled by 2 and 4 (LANCZOS; only scales whose short side still holds a training crop),
so that the starting point has seen detail at the scales of both photos and thumbnails. Writes
``<preset>.npz`` (float16 weights + JSON ``meta`` with this command, the date, commit and training
record) via :func:`archiver.codecs.autoencoder.warmstart.save_warm_start`, and ``CREDITS.csv``: the training
photos' rows of the data's ``MANIFEST.csv`` (file, licence and credit), which travel with the weights.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.regimes import DEFAULT_SRC_DIR, list_sources  # noqa: E402

SCALES = (1, 2, 4)  # downscale factors of each photo in the training pool
#: Train-split photos held back from the pyramid's pool: the crops its log and convergence are
#: measured on (the last ones of the sorted split; the heldout split is never touched).
HOLD_BACK = 4
#: Side in pixels and count of the held-back crops (the coded size of a small photo region).
HELD_CROP, HELD_COUNT = 128, 24


def training_pool(src: Path, crop: int, photos: list[Path] | None = None) -> tuple[list[np.ndarray], int]:
    """RGB arrays of every train-split photo (or of ``photos``) at each of :data:`SCALES`; also the photo count."""
    photos = list_sources(src, "train") if photos is None else photos
    pool = []
    for path in photos:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        for k in SCALES:
            w, h = rgb.width // k, rgb.height // k
            if min(w, h) >= crop:
                pool.append(np.asarray(rgb if k == 1 else rgb.resize((w, h), Image.Resampling.LANCZOS)))
    return pool, len(photos)


def write_credits(src: Path, out: Path) -> int:
    """Write ``out/CREDITS.csv`` from ``src/../MANIFEST.csv`` for the train-split photos; returns the row count."""
    manifest = src.parent / "MANIFEST.csv"
    train = {p.name for p in list_sources(src, "train")}
    with manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"] in train]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "CREDITS.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "package", "version", "original", "license"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    from archiver.codecs.autoencoder.warmstart import WEIGHTS_DIR

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codec", default="autoencoder", choices=("autoencoder", "pyramid"))
    ap.add_argument("--preset", default="tiny", help="architecture (a MODEL_PRESETS name; autoencoder)")
    ap.add_argument("--time-limit", default="25m", help="training time (pyramid: in total over all resumed runs)")
    ap.add_argument("--quality", type=int, default=4, help="--quality whose lambda the codec is trained at (autoencoder)")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--base-id", default="b1", help="pyramid: the base's id (file pyramid-<id>.npz)")
    ap.add_argument("--state", type=Path, default=REPO / "benchmarks" / "pretrain" / "pyramid",
                    help="pyramid: folder of the resumable checkpoint")
    ap.add_argument("--coarse-steps", type=int, default=8000, help="pyramid: steps of the coarse-first phase")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default). A background pretraining sharing the CPU with other "
                         "work wants 1: two busy processes with 2 threads each on 2 cores ran 4.5x slower")
    ap.add_argument("--patience", type=int, default=3,
                    help="pyramid: checks without a better held-back PSNR that count as converged (0: off)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="pyramid: start from this base file (.npz) where shapes fit; a context network of "
                         "another order starts from the base's phase-1 network and is first fitted alone")
    ap.add_argument("--context-steps", type=int, default=3000,
                    help="pyramid, with --init-from: steps of that first context-only fit")
    ap.add_argument("--context-hidden", type=int, default=0,
                    help="pyramid: width of the context network's hidden layers (0: the default spec's); a "
                         "narrower network decodes faster (benchmarks/entropy_speed.py)")
    ap.add_argument("--export-only", action="store_true",
                    help="pyramid: write the base from the checkpoint in --state as it is (no training)")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.codec == "pyramid":
        return pretrain_pyramid(args, argv)
    return pretrain_autoencoder(args, argv)


def pretrain_autoencoder(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The autoencoder's recipe: one ``--quality``, pack's training with a longer window."""
    from archiver.config import config_for_quality, parse_duration
    from archiver.codecs.autoencoder.training import train_codec
    from archiver.codecs.autoencoder.warmstart import save_warm_start
    # Convergence is judged over 2,000-step windows and allows 3 learning-rate drops: on a pool of
    # varied photos the loss is noisier than on one collection, and pack's 500-step window stopped
    # the first run at 8,000 steps (7 minutes, 21.1 dB held-back PSNR).
    cfg = config_for_quality(
        args.quality, time_limit=parse_duration(args.time_limit), model_size=args.preset,
        refine_steps=0, warm_start=False, check_every=2000, lr_drops=3, device=args.device,
    )  # fmt: skip
    pool, n_photos = training_pool(args.src, cfg.train.crop)
    started = dt.datetime.now(dt.timezone.utc)

    def show(p) -> None:
        print(f"step {p.step:6d}  loss {p.loss:8.4f}  psnr {p.psnr:5.2f} dB  bpp {p.bpp:.3f}  {p.elapsed:5.0f} s", flush=True)

    result = train_codec(pool, cfg, progress=show, report_every=500)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    trained = {
        "command": "python scripts/pretrain.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() or "unknown",
        "data": f"{n_photos} photos of the 'train' split of shared/data/dev at scales 1, 1/2, 1/4 ({len(pool)} images)",
        "quality": args.quality,
        "lmbda": cfg.train.lmbda,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "stop_reason": result.stop_reason,
        "heldout_psnr": round(result.heldout_psnr, 3),
    }
    size = save_warm_start(args.out / f"{args.preset}.npz", result.model, result.prior, cfg.model, trained)
    credits = write_credits(args.src, args.out)
    print(f"wrote {args.out / (args.preset + '.npz')} ({size} bytes) and the credits of {credits} photos: {trained}")
    return 0


def pretrain_pyramid(args: argparse.Namespace, argv: list[str] | None) -> int:
    """One variable-rate pyramid codec for every ``--quality``: pack's loss at a λ drawn per step,
    crops of 64 px with left–right flips from the train split at scales 1, 1/2, 1/4, the coarse-first
    phase for ``--coarse-steps`` steps, convergence judged at quality 4 on held-back crops over
    2,000-step windows (or ``--patience`` checks without a better held-back PSNR) with three
    learning-rate drops; resumable exactly from ``--state``."""
    import torch

    from archiver.codecs.pyramid.plan import PYRAMID_PRESETS
    from archiver.codecs.pyramid.levels import LAMBDAS as PYRAMID_LAMBDAS
    from archiver.config import config_for_quality, parse_duration
    from archiver.model.checkpoint import Checkpointer
    from archiver.codecs.pyramid.base import save_pyramid_base
    from archiver.codecs.pyramid.train import PYRAMID_CROP, PyramidRecipe, train_pyramid
    from archiver.model.crops import CropSampler, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = PYRAMID_PRESETS["default"]
    if args.context_hidden:
        spec = type(spec).from_dict({**spec.to_dict(), "context_hidden": args.context_hidden})
    limit = 1e-9 if args.export_only else parse_duration(args.time_limit)
    cfg = config_for_quality(4, time_limit=limit, codec="pyramid", refine_steps=0,
                             warm_start=False, check_every=2000, lr_drops=3, device=args.device)  # fmt: skip
    photos = list_sources(args.src, "train")
    pool, n_photos = training_pool(args.src, PYRAMID_CROP, photos[:-HOLD_BACK])
    held, _ = training_pool(args.src, HELD_CROP, photos[-HOLD_BACK:])
    heldout = CropSampler(held, HELD_CROP, np.random.default_rng(20261202)).batch(HELD_COUNT)
    qualities = tuple(sorted(PYRAMID_LAMBDAS))
    start = None
    if args.init_from is not None:  # also on resume: the recipe (learning rate) must be the same
        start = initial_state(args.init_from, spec, pool, qualities, args.context_steps)
    recipe = PyramidRecipe(qualities=qualities, coarse_steps=0 if args.init_from else args.coarse_steps, flip=True,
                           heldout=heldout, patience=args.patience, start=start)  # fmt: skip
    fingerprint = f"pretrain-pyramid:{json.dumps(spec.to_dict(), sort_keys=True)}:{n_photos}:{args.coarse_steps}"
    if args.init_from is not None:
        fingerprint += f":{args.init_from.name}"
    checkpointer = Checkpointer(args.state, fingerprint, every=300.0, resume=True)
    started = dt.datetime.now(dt.timezone.utc)

    def show(p) -> None:
        print(f"step {p.step:7d}  loss {p.loss:8.4f}  psnr {p.psnr:5.2f} dB  bpp {p.bpp:.3f}  {p.elapsed:6.0f} s  lr {p.lr:.0e}", flush=True)

    result = train_pyramid(pool, cfg, spec, progress=show, checkpointer=checkpointer, report_every=500, recipe=recipe)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    levels = next((h["levels"] for h in reversed(result.history) if "levels" in h), [])
    trained = {
        "command": "python scripts/pretrain.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() or "unknown",
        "data": f"{n_photos} photos of the 'train' split of shared/data/dev at scales 1, 1/2, 1/4 ({len(pool)} images); "
                f"{HOLD_BACK} more held back for the log",
        "qualities": list(qualities),
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "stop_reason": "stopped and exported from the checkpoint" if args.export_only else result.stop_reason,
        "device": str(resolve_device(cfg.train.device)),
        "held_back_levels": levels,
    }  # fmt: skip
    path = args.out / f"pyramid-{args.base_id}.npz"
    size = save_pyramid_base(path, result.codec, trained)
    write_credits(args.src, args.out)
    log = args.results / "pretrain-pyramid.json"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(json.dumps({"trained": trained, "history": result.history}, indent=1))
    draw_curve(result.history, args.results / "pretrain-curve.png")
    print(f"wrote {path} ({size} bytes), {log}: {result.steps} steps, {result.seconds / 3600:.2f} h")
    return 0


def initial_state(path: Path, spec, pool: list[np.ndarray], qualities: tuple[int, ...], steps: int) -> dict:
    """A :class:`PyramidCodec` state for ``spec`` from the base file ``path``: every tensor whose name
    and shape fit; a context network of another order takes the base's last phase network (same
    inputs count) and is then fitted alone for ``steps`` Adam steps (lr 3e-3, 16 crops of 64 px, a
    quality drawn per step) on the base encoder's rounded latents, so that joint training starts
    from a context that knows its neighbours."""
    import torch

    from archiver.codecs.pyramid.bases import load_base
    from archiver.codecs.pyramid.model import PyramidCodec, laplace_bits
    from archiver.codecs.pyramid.train import PYRAMID_CROP
    from archiver.model.crops import CropSampler

    codec = PyramidCodec(spec, qualities=len(qualities))
    own = codec.state_dict()
    _, arrays = load_base(path)
    base = {k: torch.from_numpy(v) for k, v in arrays.items()}
    last = max((int(k.split(".")[2]) for k in base if k.startswith("context.mlps.")), default=0)
    for name, value in base.items():
        if name.startswith("context.mlps."):
            parts = name.split(".")
            if int(parts[2]) != last:
                continue
            name = ".".join(parts[:2] + ["0"] + parts[3:]) if spec.phases == 1 else name
        if name in own and own[name].shape == value.shape:
            own[name] = value
    codec.load_state_dict(own)
    if spec.phases == 1 and steps > 0:
        sampler = CropSampler(pool, PYRAMID_CROP, np.random.default_rng(7))
        opt = torch.optim.Adam(codec.context.parameters(), lr=3e-3)
        for step in range(steps):
            q = qualities[step % len(qualities)]
            x = sampler.batch(16)
            with torch.no_grad():
                st = codec.steps(q)
                grids = [torch.round(g / st[i]) for i, g in enumerate(codec.encoder(x))]
            bits = sum(laplace_bits(g, mu, ls).sum() for g, (mu, ls) in zip(grids, codec.context(grids)))
            bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
            opt.zero_grad()
            bpp.backward()
            opt.step()
            if step % 500 == 0:
                print(f"context fit {step:5d}  q{q}  bpp {bpp.item():.3f}", flush=True)
    return {k: v.detach().clone() for k, v in codec.state_dict().items()}


def draw_curve(history: list[dict], path: Path) -> None:
    """Held-back PSNR and bpp of every level against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "levels" in h]
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, level in enumerate(rows[0]["levels"]):
        steps = [h["step"] for h in rows]
        ax1.plot(steps, [h["levels"][k]["psnr"] for h in rows], label=f"q{level['quality']}")
        ax2.plot(steps, [h["levels"][k]["bpp"] for h in rows], label=f"q{level['quality']}")
    ax1.set(xlabel="step", ylabel="held-back PSNR (dB)", title="pyramid pretraining")
    ax2.set(xlabel="step", ylabel="held-back bpp (context model estimate)", yscale="log")
    ax1.legend(ncol=2, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
