"""Rate–distortion benchmark: the archiver against JPEG, WebP, AVIF and JPEG XL on one regime.

    python benchmarks/rd.py --regime dataset|album|tiny [--qualities 2,4,6] [--time-limit 10m]
                            [--split heldout] [--no-warm-start] [--model-size auto] [--codec pyramid]
                            [--self-contained]

Warm-started packs start from weights trained on the ``train`` half of the dev photos, so their
benchmarks use ``--split heldout`` (images cut from the other half only).

Builds the regime's images (``benchmarks.regimes``), sweeps the classic codecs per file
(``archiver.bench.classic``), packs the whole set with the archiver at each ``--quality`` (the whole
``.nca`` file counts, model included), extracts it and measures PSNR / MS-SSIM against the originals
exactly as for the classic codecs. Writes ``benchmarks/results/rd-<regime>-<date>.{json,md,png}``
with the command, git commit, machine and date, and BD-rates (Bjøntegaard, log-rate over quality,
pchip) of the archiver against each codec where the curves overlap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.classic import sweep  # noqa: E402
from archiver.bench.compare import archiver_point, bd_table, machine, markdown, plot  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, SPLITS, build_regime  # noqa: E402

#: Default archiver points and training budget per point (seconds), sized so that one regime runs
#: within 45 minutes on a 2-core CPU, classic sweep included.
DEFAULTS = {
    "dataset": ([2, 4, 6], 480.0),
    "album": ([2, 4, 6], 480.0),  # the classic sweep of 48 full photos alone takes ~16 minutes: reuse it
    "tiny": ([2, 4, 6], 480.0),
}


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regime", choices=sorted(DEFAULTS), required=True)
    ap.add_argument("--qualities", default=None, help="comma-separated --quality levels (default per regime)")
    ap.add_argument("--time-limit", default=None, help="training budget per point: 600, 10m (default per regime)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of the regime")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codecs", default=None, help="comma-separated classic codecs (default all)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--tag", default="", help="suffix for the result file names")
    ap.add_argument("--split", choices=SPLITS, default="all",
                    help="source photos of the regime: all, or the half the warm-start weights were not trained on "
                         "(heldout)")  # fmt: skip
    ap.add_argument("--no-warm-start", action="store_true", help="pack from random weights (the ablation)")
    ap.add_argument("--self-contained", action="store_true",
                    help="store the whole model even when packing from a base codec (pack --self-contained)")
    ap.add_argument("--model-size", default="auto", help="decoder size for every point (default: auto)")
    ap.add_argument("--codec", default="autoencoder", help="archiver image codec: autoencoder or pyramid")
    ap.add_argument("--reuse-classic", type=Path, default=None,
                    help="take the classic codecs' points from an earlier result JSON of the same regime, "
                         "seed and image count instead of sweeping again")  # fmt: skip
    args = ap.parse_args(argv)
    from archiver.config import config_for_quality, parse_duration

    qualities, budget = DEFAULTS[args.regime]
    if args.qualities:
        qualities = [int(q) for q in args.qualities.split(",")]
    if args.time_limit:
        budget = parse_duration(args.time_limit)
    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()  # at the start: the code this run loads
    with tempfile.TemporaryDirectory(prefix=f"rd-{args.regime}-") as tmp:
        src = Path(tmp) / "images"
        paths = build_regime(args.regime, args.src, src, seed=args.seed, limit=args.limit, split=args.split)
        classic = None
        if args.reuse_classic:
            old = json.loads(args.reuse_classic.read_text())
            key = (old.get("regime"), old.get("seed", 0), old.get("n_images"), old.get("split", "all"))
            if key != (args.regime, args.seed, len(paths), args.split):
                raise SystemExit(f"{args.reuse_classic}: not the same regime, seed, split and image count")
            classic = {k: old[k] for k in ("skipped", "errors")}
            classic["points"] = [p for p in old["points"] if p["codec"] != "archiver"]
            classic["reused_from"] = str(args.reuse_classic)
        if classic is None:
            classic = sweep(paths, codecs=args.codecs.split(",") if args.codecs else None)
        points = list(classic["points"])
        for q in qualities:
            print(f"archiver --quality {q}, training budget {budget:.0f} s", file=sys.stderr, flush=True)
            cfg = config_for_quality(
                q, time_limit=budget, seed=args.seed, model_size=args.model_size, warm_start=not args.no_warm_start,
                codec=args.codec, self_contained=args.self_contained,
            )
            points.append(archiver_point(paths, src, Path(tmp), q, budget, args.seed, cfg=cfg))
    result = {
        "regime": args.regime,
        "seed": args.seed,
        "split": args.split,
        "classic_reused_from": classic.get("reused_from"),
        "command": "python benchmarks/rd.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "machine": machine(),
        "n_images": len(paths),
        "pixels": points[-1]["pixels"],
        "points": points,
        "skipped": classic["skipped"],
        "errors": classic["errors"],
    }
    result["bd_rate"] = bd_table(points)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"rd-{args.regime}{'-' + args.tag if args.tag else ''}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    (args.out / f"{stem}.md").write_text(markdown(result))
    plot(result, args.out / f"{stem}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
