"""One ``--quality`` level's λ tried at several values: a time-bounded pack per λ, its mean PSNR and bpp.

    python benchmarks/calibrate_level.py --regime album --split train --quality 8 --lambdas 0.16,0.21,0.24,0.30

Each λ is ``archiver pack SRC --quality Q --time-limit T`` in a fresh process with the pyramid's
``LAMBDAS[Q]`` set to it (the pack is otherwise the default one, refinement included), then
``archiver info``'s whole-archive bpp and mean PSNR. Choose on the ``train`` split; run the chosen λ
once on ``heldout`` to report it. Results go to ``benchmarks/results/calibrate-<regime>-<split>-q<Q>.{json,md}``
with command, commit, machine and date. Run it on a quiet machine; exits 0 without measuring when
the source photos are absent.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.compare import machine  # noqa: E402
from archiver.inspect import archive_info  # noqa: E402
from benchmarks.rd import git_commit  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def pack_at(src: Path, archive: Path, quality: int, lmbda: float, time_limit: str) -> dict:
    """One pack of ``src`` at ``quality`` with that level's λ replaced by ``lmbda``: wall seconds, bpp, PSNR."""
    code = ("import sys; import archiver.codecs.pyramid.levels as L; L.LAMBDAS[int(sys.argv[1])] = float(sys.argv[2]); "
            "from archiver.cli import app; app(sys.argv[3:])")  # fmt: skip
    cmd = [sys.executable, "-c", code, str(quality), repr(lmbda), "pack", str(src), "-o", str(archive),
           "--quality", str(quality), "--time-limit", time_limit, "--quiet", "--force"]  # fmt: skip
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    info = archive_info(archive)
    return {"lambda": lmbda, "wall_s": round(time.monotonic() - started, 1), "bpp": round(info["bpp"], 4),
            "psnr": round(info["mean_psnr"], 3)}  # fmt: skip


def markdown(rows: list[dict], meta: dict) -> str:
    """The results as a table, with what produced them."""
    lines = [f"# `--quality {meta['quality']}`'s λ on the {meta['regime']} regime, {meta['split']} split", "",
             f"{meta['images']} images, `--time-limit {meta['time_limit']}` (the whole pack), whole-archive bpp "
             "and mean PSNR (`archiver info`).", "",
             "| λ | wall s | bpp | PSNR (dB) |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['lambda']} | {r['wall_s']} | {r['bpp']:.4f} | {r['psnr']:.2f} |" for r in rows]
    lines += ["", f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['machine']}; {meta['date']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regime", default="album", choices=("dataset", "album", "tiny"))
    ap.add_argument("--split", default="train", choices=("heldout", "train", "all"),
                    help="train: to choose; heldout: to report the chosen one; all: any photos (smoke tests)")
    ap.add_argument("--quality", type=int, default=8)
    ap.add_argument("--lambdas", required=True, help="comma-separated λ values")
    ap.add_argument("--time-limit", default="8m")
    ap.add_argument("--limit", type=int, default=None, help="the regime's first N images")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not Path(args.src).is_dir():
        print(f"{args.src}: no source photos, nothing measured")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        work = Path(tmp)
        paths = build_regime(args.regime, args.src, work / "src", split=args.split, limit=args.limit)
        for lmbda in (float(v) for v in args.lambdas.split(",")):
            rows.append(pack_at(work / "src", work / f"{lmbda}.nca", args.quality, lmbda, args.time_limit))
            print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/calibrate_level.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": git_commit(), "machine": machine(), "regime": args.regime, "split": args.split,
            "quality": args.quality, "time_limit": args.time_limit, "images": len(paths),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"calibrate-{args.regime}-{args.split}-q{args.quality}"
    (args.out / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
