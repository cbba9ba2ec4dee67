"""Train the warm-start codecs shipped in ``src/archiver/model/weights/`` (the recipe, runnable).

    python scripts/pretrain.py --preset tiny --time-limit 25m

Trains one :data:`archiver.config.MODEL_PRESETS` architecture as ``pack`` would (same loss and
crops; a longer convergence window and one more learning-rate drop; no refinement, no denoiser) on the ``train`` half of ``../shared/data/dev``
(``benchmarks.regimes.split_of``: the ``heldout`` half is left for benchmarks), each photo at full
size and downscaled by 2 and 4 (LANCZOS; only scales whose short side still holds a training crop),
so that the starting point has seen detail at the scales of both photos and thumbnails. Writes
``<preset>.npz`` (float16 weights + JSON ``meta`` with this command, the date, commit and training
record) via :func:`archiver.model.warmstart.save_warm_start`, and ``CREDITS.csv``: the training
photos' rows of the data's ``MANIFEST.csv`` (file, licence and credit), which travel with the weights.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.regimes import DEFAULT_SRC_DIR, list_sources  # noqa: E402

SCALES = (1, 2, 4)  # downscale factors of each photo in the training pool


def training_pool(src: Path, crop: int) -> tuple[list[np.ndarray], int]:
    """RGB arrays of every train-split photo at each of :data:`SCALES`; also the photo count."""
    photos = list_sources(src, "train")
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
    from archiver.config import config_for_quality, parse_duration
    from archiver.model.training import train_codec
    from archiver.model.warmstart import WEIGHTS_DIR, save_warm_start

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", help="architecture (a MODEL_PRESETS name)")
    ap.add_argument("--time-limit", default="25m")
    ap.add_argument("--quality", type=int, default=4, help="--quality whose lambda the codec is trained at")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args(argv)
    # Convergence is judged over 2,000-step windows and allows 3 learning-rate drops: on a pool of
    # varied photos the loss is noisier than on one collection, and pack's 500-step window stopped
    # the first run at 8,000 steps (7 minutes, 21.1 dB held-back PSNR).
    cfg = config_for_quality(
        args.quality, time_limit=parse_duration(args.time_limit), model_size=args.preset,
        refine_steps=0, warm_start=False, check_every=2000, lr_drops=3,
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


if __name__ == "__main__":
    sys.exit(main())
