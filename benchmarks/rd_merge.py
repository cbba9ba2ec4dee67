"""Merge the archiver points of several ``benchmarks/rd.py`` results of one regime into one result.

    python benchmarks/rd_merge.py OUT_STEM RESULT.json [RESULT.json ...]

Quality points are often run one per ``rd.py`` call (each is an 8-minute pack, and the shared CPU
is taken in turns); BD-rates need at least two. The classic codecs' points are taken from the first
result; every result must be of the same regime, seed, split and image count. Writes
``benchmarks/results/OUT_STEM.{json,md,png}`` exactly as ``rd.py`` does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.compare import bd_table, markdown, plot  # noqa: E402

_SAME = ("regime", "seed", "split", "n_images")


def merge(results: list[dict]) -> dict:
    """One result: the first's classic points and every result's archiver points (by quality)."""
    first = results[0]
    for other in results[1:]:
        if any(other[k] != first[k] for k in _SAME):
            raise SystemExit("results differ in " + ", ".join(k for k in _SAME if other[k] != first[k]))
    points = [p for p in first["points"] if p["codec"] != "archiver"]
    ours = {p["setting"]: p for r in results for p in r["points"] if p["codec"] == "archiver"}
    points += [ours[q] for q in sorted(ours)]
    merged = {**first, "points": points, "command": " + ".join(r["command"] for r in results)}
    merged["merged_from"] = [r.get("date") for r in results]
    merged["bd_rate"] = bd_table(points)
    return merged


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit(__doc__)
    out = REPO / "benchmarks" / "results"
    result = merge([json.loads(Path(p).read_text()) for p in args[1:]])
    (out / f"{args[0]}.json").write_text(json.dumps(result, indent=1, default=float))
    (out / f"{args[0]}.md").write_text(markdown(result))
    plot(result, out / f"{args[0]}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
