"""Rate–distortion benchmark: the archiver against JPEG, WebP, AVIF and JPEG XL on one regime.

    python benchmarks/rd.py --regime dataset|album|tiny [--qualities 2,4,6] [--time-limit 10m]

Builds the regime's images (``benchmarks.regimes``), sweeps the classic codecs per file
(``benchmarks.classic``), packs the whole set with the archiver at each ``--quality`` (the whole
``.nca`` file counts, model included), extracts it and measures PSNR / MS-SSIM against the originals
exactly as for the classic codecs. Writes ``benchmarks/results/rd-<regime>-<date>.{json,md,png}``
with the command, git commit, machine and date, and BD-rates (Bjøntegaard, log-rate over quality,
pchip) of the archiver against each codec where the curves overlap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.classic import load_rgb, sweep  # noqa: E402
from benchmarks.metrics import bd_rate, mean_psnr, ms_ssim, psnr, rate_at_quality  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

#: Default archiver points and training budget per point (seconds), sized so that one regime runs
#: within 45 minutes on a 2-core CPU, classic sweep included.
DEFAULTS = {
    "dataset": ([2, 4, 6], 480.0),
    "album": ([2, 4, 6], 480.0),  # the classic sweep of 48 full photos alone takes ~16 minutes: reuse it
    "tiny": ([2, 4, 6], 480.0),
}


def machine() -> dict:
    """Where the numbers were taken."""
    try:
        import torch

        torch_version, threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        torch_version, threads = None, None
    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch_version,
        "torch_threads": threads,
    }


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def archiver_point(
    paths: list[Path], src: Path, work: Path, quality: int, time_limit: float, seed: int, cfg=None, name: str = ""
) -> dict:
    """Pack ``src`` at ``quality`` (or with ``cfg``), extract, and measure like the classic sweep does."""
    from archiver.config import config_for_quality
    from archiver.extract import extract
    from archiver.pack import pack

    archive = work / f"{name or f'q{quality}'}.nca"
    cfg = cfg or config_for_quality(quality, time_limit=time_limit, seed=seed)
    t0 = time.monotonic()
    report = pack(src, archive, cfg, force=True)
    pack_s = time.monotonic() - t0
    out = work / f"{archive.stem}-out"
    t0 = time.monotonic()
    extract(archive, out, force=True, image_format="png")
    extract_s = time.monotonic() - t0
    psnrs, msssims, pixels = [], [], 0
    for p in paths:
        a, b = load_rgb(p), load_rgb(out / p.relative_to(src).with_suffix(".png"))
        psnrs.append(psnr(a, b))
        msssims.append(ms_ssim(a, b))
        pixels += a.shape[0] * a.shape[1]
    t = report.training
    crop = t.get("crop", cfg.train.crop)
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(archive) as reader:
        model_size = reader.config.get("model_size", "large")
    size = archive.stat().st_size
    return {
        "codec": "archiver", "setting": quality, "n_images": len(paths), "bytes": size, "pixels": pixels,
        "bpp": 8.0 * size / pixels, "psnr": mean_psnr(psnrs),
        "ms_ssim": float(np.nanmean(msssims)) if not all(np.isnan(msssims)) else None,
        "model_bytes": None, "latent_bytes": report.latent_bytes,
        "pack_s": pack_s, "extract_s": extract_s, "extract_mpx_s": pixels / 1e6 / extract_s,
        "train_s": t["train_seconds"], "steps": t["steps"], "stop_reason": t["stop_reason"],
        "train_mpx_s": t["steps"] * cfg.train.batch * crop * crop / 1e6 / max(t["train_seconds"], 1e-9),
        "crop": crop, "time_limit": cfg.train.time_limit, "archive": str(archive),
        "input_bytes": report.input_bytes, "images": report.images, "model_size": model_size,
    }  # fmt: skip


def bd_table(points: list[dict]) -> dict:
    """BD-rate (%) of the archiver vs each codec, for PSNR and MS-SSIM, plus bpp at equal PSNR."""
    ours = [p for p in points if p["codec"] == "archiver"]
    table = {}
    for codec in sorted({p["codec"] for p in points} - {"archiver"}):
        theirs = [p for p in points if p["codec"] == codec]
        row = {}
        for metric in ("psnr", "ms_ssim"):
            a = [(p["bpp"], p[metric]) for p in ours if p[metric] is not None]
            b = [(p["bpp"], p[metric]) for p in theirs if p[metric] is not None]
            row[f"bd_rate_{metric}"] = bd_rate(*zip(*a), *zip(*b)) if len(a) > 1 and len(b) > 1 else None
        row["bpp_at_our_psnr"] = {
            str(p["setting"]): rate_at_quality([q["bpp"] for q in theirs], [q["psnr"] for q in theirs], p["psnr"])
            for p in ours
        }
        table[codec] = row
    return table


def markdown(result: dict) -> str:
    lines = [
        f"# Rate–distortion, regime `{result['regime']}`",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}, commit {result['commit']}, machine: {result['machine']['platform']}, "
        f"{result['machine']['cores']} cores, torch {result['machine']['torch']}",
        f"- images: {result['n_images']} ({result['pixels']} pixels); archiver bytes = whole `.nca` file, model included",
        *([f"- classic codec points reused from `{result['classic_reused_from']}` (same images)"]
          if result.get("classic_reused_from") else []),
        "",
        "| codec | setting | bpp | PSNR (dB) | MS-SSIM | notes |",
        "|---|---|---|---|---|---|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["codec"] != "archiver", p["codec"], p["bpp"])):
        note = ""
        if p["codec"] == "archiver":
            note = (f"{p.get('model_size', 'large')} decoder; pack {p['pack_s']:.0f} s ({p['steps']} steps, {p['stop_reason']}, "
                    f"{p['train_mpx_s']:.2f} Mpx/s), extract {p['extract_mpx_s']:.2f} Mpx/s")  # fmt: skip
        ms = f"{p['ms_ssim']:.4f}" if p.get("ms_ssim") is not None else ""
        lines.append(f"| {p['codec']} | {p['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {ms} | {note} |")
    lines += ["", "| vs codec | BD-rate PSNR | BD-rate MS-SSIM | codec bpp at the archiver's PSNR (per quality) |",
              "|---|---|---|---|"]  # fmt: skip
    fmt = lambda v: "n/a" if v is None else f"{v:+.1f}%"  # noqa: E731
    for codec, row in result["bd_rate"].items():
        at = ", ".join(f"q{k}: {'n/a' if v is None else f'{v:.4f}'}" for k, v in row["bpp_at_our_psnr"].items())
        lines.append(f"| {codec} | {fmt(row['bd_rate_psnr'])} | {fmt(row['bd_rate_ms_ssim'])} | {at} |")
    lines += ["", "Negative BD-rate: the archiver needs fewer bits for the same quality. n/a: fewer than two "
              "archiver points, or the curves do not overlap in quality.", ""]  # fmt: skip
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for codec in sorted({p["codec"] for p in result["points"]}):
        pts = sorted((p["bpp"], p["psnr"]) for p in result["points"] if p["codec"] == codec)
        ax.plot(*zip(*pts), marker="o" if codec == "archiver" else ".", lw=2.5 if codec == "archiver" else 1,
                label=codec)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (bytes on disk, log scale)")
    ax.set_ylabel("PSNR (dB, RGB, mean over images)")
    ax.set_title(f"regime {result['regime']}: {result['n_images']} images")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    ap.add_argument("--reuse-classic", type=Path, default=None,
                    help="take the classic codecs' points from an earlier result JSON of the same regime, "
                         "seed and image count instead of sweeping again")  # fmt: skip
    args = ap.parse_args(argv)
    from archiver.config import parse_duration

    qualities, budget = DEFAULTS[args.regime]
    if args.qualities:
        qualities = [int(q) for q in args.qualities.split(",")]
    if args.time_limit:
        budget = parse_duration(args.time_limit)
    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()  # at the start: the code this run loads
    with tempfile.TemporaryDirectory(prefix=f"rd-{args.regime}-") as tmp:
        src = Path(tmp) / "images"
        paths = build_regime(args.regime, args.src, src, seed=args.seed, limit=args.limit)
        classic = None
        if args.reuse_classic:
            old = json.loads(args.reuse_classic.read_text())
            same = (old.get("regime"), old.get("seed", 0), old.get("n_images")) == (args.regime, args.seed, len(paths))
            if not same:
                raise SystemExit(f"{args.reuse_classic}: not the same regime, seed and image count")
            classic = {k: old[k] for k in ("skipped", "errors")}
            classic["points"] = [p for p in old["points"] if p["codec"] != "archiver"]
            classic["reused_from"] = str(args.reuse_classic)
        if classic is None:
            classic = sweep(paths, codecs=args.codecs.split(",") if args.codecs else None)
        points = list(classic["points"])
        for q in qualities:
            print(f"archiver --quality {q}, training budget {budget:.0f} s", file=sys.stderr, flush=True)
            points.append(archiver_point(paths, src, Path(tmp), q, budget, args.seed))
    result = {
        "regime": args.regime,
        "seed": args.seed,
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
