"""Continue a shipped pyramid base on a GPU for a fixed time, optionally with a wider synthesis.

    python scripts/pretrain_gpu.py --init src/archiver/model/weights/pyramid-b3.npz \
        --hidden 48,24 --seconds 420 --out /tmp/w48 --name w48

The recipe of ``scripts/pretrain.py --codec pyramid`` (one variable-rate codec for every
``--quality``: a level drawn per step with its λ of ``PYRAMID_LAMBDAS``, loss λ·255²·MSE + bpp,
left–right flips, train-split photos at scales 1, 1/2, 1/4, the last 4 held back for the log), sized
for an accelerator lent for minutes rather than a CPU for hours: larger steps (``--batch`` crops of
``--crop`` px: 32 × 128² is 64× the pixels of the CPU recipe's 8 × 64²), a cosine learning rate over
the time limit instead of convergence detection (a time-boxed run has no time to wait for a
plateau), and a snapshot every ``--save-every`` seconds (the base file and a resumable state), so a
run cut off by its lease still returns its latest weights.

**Widening.** With ``--hidden`` wider than the base's, the synthesis' 1×1 layers grow the way
Net2Net does it (Chen et al. 2016, function-preserving): the base's weights fill the top-left block,
new hidden units get small random incoming weights and zero outgoing weights, so training starts
from exactly the base's output and rate and can only add what the new units learn. Everything else
(encoder, context network, quantization steps) is the base's.

Writes ``<out>/<name>.npz`` (a base file, :func:`archiver.codecs.pyramid.base.save_pyramid_base`,
whose ``trained`` record holds the command, steps, device and every held-back check) and
``<out>/<name>.pt`` (codec, optimizer and step, for a later continuation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pretrain import HELD_COUNT, HELD_CROP, HOLD_BACK, training_pool  # noqa: E402

from benchmarks.regimes import DEFAULT_SRC_DIR, list_sources  # noqa: E402

#: Incoming weights of a new hidden unit: normal with this standard deviation (small, so that the
#: LeakyReLU inputs of the old units are not disturbed through the next layer once its outgoing
#: weights leave zero).
NEW_UNIT_STD = 0.02


def widen_state(base: dict, own: dict) -> dict:
    """``own`` (a fresh codec's state) filled from ``base`` (same names): equal shapes are copied;
    a larger 1×1/3×3 weight or bias takes the base's block at its top-left, new incoming rows get
    :data:`NEW_UNIT_STD` noise and new outgoing columns zeros (function-preserving widening)."""
    import torch

    gen = torch.Generator().manual_seed(20261204)
    out = {}
    for name, mine in own.items():
        ref = base.get(name)
        if ref is None:
            raise ValueError(f"the base has no tensor {name}")
        if ref.shape == mine.shape:
            out[name] = ref.clone()
            continue
        if ref.ndim != mine.ndim or any(r > m for r, m in zip(ref.shape, mine.shape)):
            raise ValueError(f"{name}: base shape {tuple(ref.shape)} does not fit in {tuple(mine.shape)}")
        grown = torch.zeros_like(mine)  # a bias: new units start at 0
        if ref.ndim > 1:  # (out, in, k, k): new outputs random-small, new inputs (from new units) zero
            grown[ref.shape[0] :] = torch.randn(grown[ref.shape[0] :].shape, generator=gen) * NEW_UNIT_STD
            grown[ref.shape[0] :, ref.shape[1] :] = 0.0
        grown[tuple(slice(0, s) for s in ref.shape)] = ref
        out[name] = grown
    return out


#: Fraction of the run over which the learning rate warms up linearly from 0 (Adam's first moments
#: are fresh: full-size first steps moved the base's held-back q8 PSNR down by 0.3 dB in a CPU try).
WARMUP = 0.03


def cosine_lr(lr: float, frac: float, floor: float = 0.05) -> float:
    """Learning rate at ``frac`` (0 … 1) of the run: a linear warm-up over :data:`WARMUP`, then
    cosine from ``lr`` down to ``floor · lr``."""
    warm = min(1.0, frac / WARMUP)
    return warm * lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def main(argv: list[str] | None = None) -> int:
    import torch

    from archiver.codecs.pyramid.bases import load_base
    from archiver.codecs.pyramid.plan import PyramidSpec
    from archiver.codecs.pyramid.levels import LAMBDAS as PYRAMID_LAMBDAS
    from archiver.codecs.pyramid.model import PyramidCodec
    from archiver.codecs.pyramid.base import save_pyramid_base
    from archiver.codecs.pyramid.train import evaluate_levels, optimizer_step
    from archiver.model.crops import CropSampler, resolve_device

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", type=Path, required=True, help="the base file (.npz) to start from")
    ap.add_argument("--hidden", default="", help="synthesis 1×1 widths, e.g. 48,24 (default: the base's)")
    ap.add_argument("--seconds", type=float, default=420.0, help="training time in seconds")
    ap.add_argument("--batch", type=int, default=32, help="crops per step")
    ap.add_argument("--crop", type=int, default=128, help="crop side in pixels (a multiple of the spec's stride)")
    ap.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate at the start (cosine to 5 %%)")
    ap.add_argument("--save-every", type=float, default=60.0, help="seconds between held-back checks and snapshots")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR, help="folder of the photos (train split used)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", required=True, help="file stem of the outputs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    device = resolve_device(args.device)
    meta, arrays = load_base(args.init)
    spec_dict = dict(meta["spec"])
    if args.hidden:
        spec_dict["hidden"] = [int(v) for v in args.hidden.split(",")]
    spec = PyramidSpec.from_dict(spec_dict)
    qualities = tuple(sorted(PYRAMID_LAMBDAS))
    codec = PyramidCodec(spec, qualities=len(qualities))
    base = {k.removeprefix("codec."): torch.from_numpy(v) for k, v in arrays.items()}
    codec.load_state_dict(widen_state(base, codec.state_dict()))
    codec.to(device)

    photos = list_sources(args.src, "train")
    pool, n_photos = training_pool(args.src, args.crop, photos[:-HOLD_BACK])
    held, _ = training_pool(args.src, HELD_CROP, photos[-HOLD_BACK:])
    heldout = CropSampler(held, HELD_CROP, np.random.default_rng(20261202)).batch(HELD_COUNT).to(device)
    rng = np.random.default_rng(20261204)
    sampler = CropSampler(pool, args.crop, rng, flip=True)
    optimizer = torch.optim.Adam(codec.parameters(), lr=args.lr)
    started = dt.datetime.now(dt.timezone.utc)
    history = [{"step": 0, "seconds": 0.0, "levels": evaluate_levels(codec, heldout, qualities)}]
    print(f"{args.name}: {spec.to_dict()} on {device}; start {history[0]['levels']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    last_save, step = t0, 0

    def snapshot(final: bool) -> None:
        elapsed = time.monotonic() - t0
        history.append({"step": step, "seconds": round(elapsed, 1), "levels": evaluate_levels(codec, heldout, qualities)})
        trained = {
            "command": "python scripts/pretrain_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": started.isoformat(timespec="seconds"),
            "data": f"{n_photos} photos of the 'train' split of shared/data/dev at scales 1, 1/2, 1/4 "
                    f"({len(pool)} images); {HOLD_BACK} more held back for the log",
            "init": args.init.name, "qualities": list(qualities), "steps": step, "seconds": round(elapsed, 1),
            "batch": args.batch, "crop": args.crop, "lr": args.lr, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else str(device), "stop_reason": "time_limit" if final else "snapshot",
            "history": history,
        }  # fmt: skip
        save_pyramid_base(args.out / f"{args.name}.npz", codec, trained)
        tmp = args.out / f"{args.name}.pt.partial"
        torch.save({"codec": codec.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "spec": spec.to_dict()}, tmp)
        tmp.replace(args.out / f"{args.name}.pt")
        levels = " ".join(f"q{lv['quality']} {lv['psnr']:.2f}/{lv['bpp']:.3f}" for lv in history[-1]["levels"])
        print(f"{args.name} step {step:6d} {elapsed:6.0f} s ({step / max(elapsed, 1e-9):.1f}/s): {levels}", flush=True)

    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= args.seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, elapsed / args.seconds)
        q = qualities[int(rng.integers(len(qualities)))]
        x = sampler.batch(args.batch).to(device, non_blocking=True)
        optimizer_step(codec, optimizer, x, q, PYRAMID_LAMBDAS[q])  # not read back: the next batch crops meanwhile
        step += 1
        if time.monotonic() - last_save >= args.save_every:
            snapshot(False)
            last_save = time.monotonic()
    snapshot(True)
    print(json.dumps({"name": args.name, "steps": step, "seconds": round(time.monotonic() - t0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
