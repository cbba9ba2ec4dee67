"""Ablation of the pyramid codec's ingredients at equal CPU time (training only, estimated rate).

    python benchmarks/pyramid_ablation.py [--seconds 150] [--lmbda 0.0131] [--only 0,1,2]

Each variant is one run of ``benchmarks/pyramid_probe.py`` in its own process on the dataset regime's
heldout split (400 crops of 128²): the same seconds of training from scratch, then PSNR and the
context model's estimated bits on the whole set (rounded latents, float weights, no refinement).
Writes ``benchmarks/results/pyramid-ablation.{json,md}`` with command, commit, machine and date.
Whole-pack numbers (int8 synthesis, coded bytes, refinement) are in ``rd-dataset-pyramid-heldout.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from archiver.bench.compare import machine  # noqa: E402

#: name → extra probe arguments
VARIANTS: dict[str, list[str]] = {
    "full pyramid, full-size grid from the start": [],
    "full pyramid, coarse levels first (the default)": ["--coarse-first", "0.5"],
    "no full-size grid (1/2 … 1/32 only)": ["--coarse-first", "1.0"],
    "only the 1/16 grid (like the autoencoder's stride 16)": ["--zero-levels", "0,1,2,3,5"],
    "1/8 + 1/16 grids only": ["--zero-levels", "0,1,2,5"],
    "coarse levels first, no context (level only)": ["--coarse-first", "0.5", "--no-context"],
    "only the 1/16 grid, no context": ["--zero-levels", "0,1,2,3,5", "--no-context"],
    "coarse levels first, synthesis 16-8": ["--coarse-first", "0.5", "--spec", json.dumps({"hidden": [16, 8]})],
    "coarse levels first, synthesis 48-32": ["--coarse-first", "0.5", "--spec", json.dumps({"hidden": [48, 32]})],
    "coarse levels first, first synthesis layer 3×3": ["--coarse-first", "0.5", "--first-kernel", "3"],
}


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--lmbda", type=float, default=0.0131)
    ap.add_argument("--only", default="", help="comma-separated variant numbers (0-based)")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()  # at the start: the code the probes run is what is checked out now
    rows = []
    chosen = [int(k) for k in args.only.split(",")] if args.only else range(len(VARIANTS))
    for k, (name, extra) in enumerate(VARIANTS.items()):
        if k not in chosen:
            continue
        cmd = [sys.executable, str(REPO / "benchmarks" / "pyramid_probe.py"), "--seconds", str(args.seconds),
               "--lmbda", str(args.lmbda), *extra]  # fmt: skip
        print(name, file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
        rows.append({"variant": name, **json.loads(out[-1])})
    result = {"command": "python benchmarks/pyramid_ablation.py " + " ".join(sys.argv[1:]), "date": started.isoformat(timespec="seconds"),
              "commit": commit, "machine": machine(), "rows": rows}  # fmt: skip
    out_dir = REPO / "benchmarks" / "results"
    (out_dir / "pyramid-ablation.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Pyramid codec ablation (equal training time, estimated rate)", "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}, commit {result['commit']}, machine: {result['machine']['platform']}, "
        f"{result['machine']['cores']} cores, torch {result['machine']['torch']}",
        f"- {args.seconds:.0f} s of training from scratch per variant, λ = {args.lmbda}, dataset regime heldout split "
        "(400 crops 128²), crops of 64² × 8; PSNR and the context model's estimated bpp on all 400 crops", "",
        "| variant | steps | PSNR (dB) | est. latent bpp | loss λ·255²·MSE + bpp (lower is better) | synthesis + context weights | synthesis MAC/px |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | {r['psnr']:.2f} | {r['latent_bpp']:.3f} | {r['loss']:.3f} | {r['decoder_params']} | {r['macs_per_px']:.0f} |")
    (out_dir / "pyramid-ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
