"""A tree of many small images: pack and list stay within bounded memory, and bookkeeping stays small.

    python benchmarks/many_entries.py [--count 20000] [--side 32] [--max-steps 50]

Makes ``--count`` seeded synthetic PNGs of side × 3/4·side pixels (subfolders of 1,000,
:func:`benchmarks.memory.make_collection`), packs them with training capped at ``--max-steps`` and
no latent refinement (memory and bookkeeping do not depend on how well the codec is trained), then
lists and ``info``s the archive, each in a fresh process whose peak RSS is read at its exit
(:func:`benchmarks.memory.run`). Reports the archive's bytes by kind (``info``'s ``other_breakdown``)
and the bytes per image of everything that is neither latents nor model. Writes
``benchmarks/results/many-entries.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.memory import make_collection, run  # noqa: E402
from benchmarks.rd import git_commit, machine  # noqa: E402


def measure(count: int, side: int, max_steps: int, work: Path) -> dict:
    """Pack, list and info one collection of ``count`` images; times, peak RSS and the byte breakdown."""
    folder = work / "src"
    make_collection(folder, count, side)
    archive = work / "many.nca"
    pack_s, pack_rss = run(["pack", str(folder), "-o", str(archive), "--max-steps", str(max_steps), "--refine", "0",
                            "--quality", "2", "--quiet", "--force"])  # fmt: skip
    list_s, list_rss = run(["list", str(archive)])
    from archiver.inspect import archive_info

    info = archive_info(archive)
    other = info["other_bytes"]
    return {
        "images": count, "side": side, "pack_s": pack_s, "pack_peak_rss": pack_rss, "list_s": list_s,
        "list_peak_rss": list_rss, "archive_bytes": info["archive_bytes"], "model_bytes": info["model_bytes"],
        "latent_bytes": info["latent_bytes"], "other_bytes": other, "other_per_image": other / count,
        "other_breakdown": info["other_breakdown"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--side", type=int, default=32, help="image width in pixels (height 3/4 of it)")
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="many-") as tmp:
        row = measure(args.count, args.side, args.max_steps, Path(tmp))
    result = {"date": started.isoformat(timespec="seconds"), "commit": git_commit(), "machine": machine(),
              "command": "python benchmarks/many_entries.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "row": row}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "many-entries.json").write_text(json.dumps(result, indent=1))
    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    md = [f"# {args.count:,} small images: memory and bookkeeping ({started.date()}, commit {result['commit']})", "",
          f"- command: `{result['command']}`; {machine()['cores']} cores", "",
          "| images | pack peak RSS (MiB) | pack s | list peak RSS (MiB) | list s | archive B | model B | latents B | other B | other B/image |",
          "|---|---|---|---|---|---|---|---|---|---|",
          f"| {row['images']:,} of {args.side}x{args.side * 3 // 4} | {mib(row['pack_peak_rss'])} | {row['pack_s']:.0f} | "
          f"{mib(row['list_peak_rss'])} | {row['list_s']:.1f} | {row['archive_bytes']:,} | {row['model_bytes']:,} | "
          f"{row['latent_bytes']:,} | {row['other_bytes']:,} | {row['other_per_image']:.2f} |", "",
          "Other bytes by kind: " + ", ".join(f"{k} {v:,}" for k, v in row["other_breakdown"].items()), ""]  # fmt: skip
    (args.out / "many-entries.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
