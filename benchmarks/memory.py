"""Peak memory of pack and extract against collection size, and on one very large photo.

    python benchmarks/memory.py [--counts 100,1000,10000] [--side 256] [--photo-mpx 24] [--max-steps 200]
                                [--append-steps 5]

Synthetic photo-like PNGs (seeded: smooth colour fields from a low-resolution random image, enlarged,
plus grain) are made in a scratch folder; each collection is packed and extracted in a fresh process
whose own peak RSS is read with ``getrusage(RUSAGE_SELF)`` at its exit. Training is capped by
``--max-steps`` (memory does not depend on how well the codec is trained). The large photo is also
appended to the first collection's archive (latent search, tile by tile). Writes
``benchmarks/results/memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.rd import git_commit, machine  # noqa: E402

#: Runs the archiver CLI in this process and reports the process's own peak RSS (KiB on Linux).
_WRAP = """
import resource, sys
from archiver.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    sys.stderr.write("PEAK_RSS_KIB %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour fields (a small random image enlarged bicubically) plus grain."""
    small = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), dtype=np.int16)
    im = im + rng.integers(-6, 7, im.shape, dtype=np.int16)
    return Image.fromarray(np.clip(im, 0, 255).astype(np.uint8))


def make_collection(folder: Path, count: int, side: int, seed: int = 0) -> int:
    """``count`` PNGs of side × 3/4·side pixels in subfolders of 1,000; returns the pixel count."""
    rng = np.random.default_rng(seed)
    h = side * 3 // 4
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        synthetic_photo(rng, side, h).save(sub / f"{i:06d}.png", compress_level=1)
    return count * side * h


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of ``archiver ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"archiver {' '.join(args)} failed: {proc.stderr[-2000:]}")
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KIB")][-1]
    return wall, int(peak.split()[1]) * 1024


def measure(name: str, folder: Path, pixels: int, images: int, work: Path, max_steps: int, refine: int = 30) -> dict:
    archive = work / f"{name}.nca"
    pack_s, pack_rss = run(["pack", str(folder), "-o", str(archive), "--max-steps", str(max_steps),
                            "--refine", str(refine), "--quality", "4", "--quiet", "--force"])  # fmt: skip
    extract_s, extract_rss = run(["extract", str(archive), "-o", str(work / f"{name}-out"), "--quiet", "--force"])
    return {
        "case": name, "images": images, "pixels": pixels, "decoded_bytes": 3 * pixels,
        "pack_s": pack_s, "pack_peak_rss": pack_rss, "extract_s": extract_s, "extract_peak_rss": extract_rss,
        "archive_bytes": archive.stat().st_size,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="100,1000,10000", help="collection sizes (images)")
    ap.add_argument("--side", type=int, default=256, help="image width in pixels (height 3/4 of it)")
    ap.add_argument("--photo-mpx", type=float, default=24.0, help="megapixels of the single large photo (0: skip)")
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--refine", type=int, default=30, help="pack's --refine")
    ap.add_argument("--append-steps", type=int, default=5, help="latent search steps when appending the photo")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        work = Path(tmp)
        first = None  # the first collection's archive, which the large photo is appended to
        for count in (int(c) for c in args.counts.split(",") if c):
            folder = work / f"c{count}"
            pixels = make_collection(folder, count, args.side)
            print(f"{count} images", file=sys.stderr, flush=True)
            rows.append(measure(f"{count} images of {args.side}x{args.side * 3 // 4}", folder, pixels, count, work,
                                args.max_steps, args.refine))  # fmt: skip
            first = first or work / f"{rows[-1]['case']}.nca"
            for p in folder.rglob("*"):
                p.unlink() if p.is_file() else None
        if args.photo_mpx > 0:
            w = int((args.photo_mpx * 1e6 * 4 / 3) ** 0.5) // 16 * 16
            h = w * 3 // 4
            (work / "photo").mkdir()
            synthetic_photo(np.random.default_rng(1), w, h).save(work / "photo" / "big.png", compress_level=1)
            print(f"one {w}x{h} photo", file=sys.stderr, flush=True)
            rows.append(measure(f"one {w}x{h} photo ({w * h / 1e6:.1f} Mpx)", work / "photo", w * h, 1, work,
                                args.max_steps, args.refine))  # fmt: skip
            if first is not None:  # the same photo appended to the first collection's archive
                append_s, append_rss = run(["append", str(first), str(work / "photo"), "--steps",
                                            str(args.append_steps), "--quiet"])  # fmt: skip
                rows[-1].update(append_s=append_s, append_peak_rss=append_rss, append_to=rows[0]["case"])
    result = {"date": started.isoformat(timespec="seconds"), "commit": commit, "machine": machine(),
              "command": "python benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "max_steps": args.max_steps, "rows": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=1))
    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    md = [f"# Peak memory of pack and extract ({started.date()}, commit {commit})", "",
          f"- command: `{result['command']}`; training capped at {args.max_steps} steps; "
          f"{machine()['cores']} cores", "",
          "| collection | decoded pixels (MiB) | pack peak RSS (MiB) | pack s | extract peak RSS (MiB) | extract s |",
          "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        md.append(f"| {r['case']} | {mib(r['decoded_bytes'])} | {mib(r['pack_peak_rss'])} | {r['pack_s']:.0f} | "
                  f"{mib(r['extract_peak_rss'])} | {r['extract_s']:.0f} |")  # fmt: skip
    for r in rows:
        if "append_peak_rss" in r:
            md += ["", f"Appending the {r['case'][4:]} to the archive of {r['append_to']} "
                   f"(`append --steps {args.append_steps}`; memory does not depend on the steps): peak RSS "
                   f"{mib(r['append_peak_rss'])} MiB, {r['append_s']:.0f} s."]  # fmt: skip
    (args.out / "memory.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
