"""Bytes against compute: ``pack --effort E`` at several efforts and qualities, against WebP and AVIF
on the same pixels.

    python benchmarks/effort.py --regime album --limit 8 --runs q4@1 q4@4 q4@16

Each run ``qQ@E`` is ``python -m archiver pack SRC -o A.nca --quality Q --effort E --quiet`` in a
fresh process on the ``heldout`` split (:mod:`benchmarks.regimes`; ``--limit``: its first N images;
``--split train`` to choose a setting, ``--pack-args "..."``: more pack options for every run).
Reported per run: wall time (interpreter start and reading included), whole-archive bpp and mean
PSNR (``archiver info``), how refinement was spent (images annealed, steps, seconds), the
per-image tails kept (images, bytes; ``--pack-args=--no-image-tails`` turns them off), and the
archive's bytes over WebP's and AVIF's at the same mean PSNR (each classic codec's quality sweep on
the same images, log-bpp interpolated in PSNR; "–" outside its sweep). Results go to
``benchmarks/results/effort-<regime>.{json,md}`` with command, commit, machine and date. Run it on
a quiet machine. Exits 0 without measuring when the source photos are absent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.compare import machine  # noqa: E402
from archiver.inspect import archive_info  # noqa: E402
from benchmarks.rd import git_commit  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
CLASSIC = ("webp", "avif")


def measure(src: Path, work: Path, run: str, extra: list[str] | None = None) -> dict:
    """One pack ``qQ@E`` in a fresh process (``extra``: more pack options): wall seconds, bpp, PSNR
    and how refinement went."""
    quality, effort = run[1:].split("@")
    archive = work / f"{run}.nca"
    cmd = [sys.executable, "-m", "archiver", "pack", str(src), "-o", str(archive), "--quality", quality,
           "--effort", effort, "--quiet", "--force", *(extra or [])]  # fmt: skip
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - started
    info = archive_info(archive)
    refine = info.get("refine") or {}
    return {
        "run": run, "quality": int(quality), "effort": float(effort), "wall_s": round(wall, 1),
        "bpp": round(info["bpp"], 4), "psnr": round(info["mean_psnr"], 3),
        "limit_s": (info.get("time_budget") or {}).get("limit_s"), "annealed": refine.get("annealed"),
        "searched_steps": refine.get("mean_steps"), "tails": info.get("tails"),
    }  # fmt: skip


def bytes_over(curve: list[dict], bpp: float, psnr: float) -> float | None:
    """``bpp`` over the classic ``curve``'s bpp at ``psnr`` (log-bpp interpolated), None outside it."""
    pts = sorted((p["psnr"], p["bpp"]) for p in curve if p.get("psnr") and p.get("bpp"))
    if not pts or not pts[0][0] <= psnr <= pts[-1][0]:
        return None
    ps, bs = zip(*pts)
    return bpp / float(np.exp(np.interp(psnr, ps, np.log(bs))))


def markdown(regime: str, rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Bytes against compute: `--effort` on the {meta.get('split', 'heldout')} {regime} ({meta['images']} images, {meta['mpx']:.2f} Mpx)", "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}, commit {meta['commit']}, machine: {meta['machine']['platform']}, "
        f"{meta['machine']['cores']} cores", "",
        "| run | wall s | limit s | bpp | PSNR dB | annealed (images, steps, s) | tails (images, bytes) | × WebP bytes | × AVIF bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        a = r["annealed"] or {}
        ann = f"{a.get('images', 0)}, {a.get('mean_steps', 0):.0f}, {a.get('seconds', 0):.0f}" if a.get("images") else "none (searched)"
        ratios = [f"{r[c]:.2f}" if r.get(c) else "–" for c in CLASSIC]
        t = r.get("tails") or {}
        tails = f"{t['images']}, {t['bytes']}" if t else "none"
        lines.append(f"| {r['run']} | {r['wall_s']:.0f} | {r['limit_s']:.0f} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
                     f"{ann} | {tails} | {' | '.join(ratios)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regime", default="album", choices=("dataset", "album", "tiny"))
    ap.add_argument("--limit", type=int, default=8, help="the regime's first N heldout images")
    ap.add_argument("--runs", nargs="+", default=["q4@1", "q4@4", "q4@16"])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="", help="results as effort-<regime>-<tag>")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"),
                    help="train: for choosing a setting (never tune on heldout)")
    ap.add_argument("--pack-args", default="", help="more pack options for every run, one string")
    args = ap.parse_args(argv)
    if not Path(args.src).is_dir():
        print(f"{args.src}: no source photos, nothing measured")
        return 0
    from archiver.bench.classic import sweep

    with tempfile.TemporaryDirectory(prefix="effort-") as tmp:
        work = Path(tmp)
        paths = build_regime(args.regime, args.src, work / "src", split=args.split, limit=args.limit)
        from PIL import Image

        mpx = sum(np.prod(Image.open(p).size) for p in paths) / 1e6
        classic = sweep(paths, list(CLASSIC), with_msssim=False)["points"]
        rows = []
        for run in args.runs:
            rows.append(measure(work / "src", work, run, args.pack_args.split()))
            for c in CLASSIC:
                rows[-1][c] = bytes_over([p for p in classic if p["codec"] == c], rows[-1]["bpp"], rows[-1]["psnr"])
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/effort.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": git_commit(), "machine": machine(), "images": len(paths), "mpx": mpx, "split": args.split,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"effort-{args.regime}" + (f"-{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows, "classic": classic}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(args.regime, rows, meta))
    print(markdown(args.regime, rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
