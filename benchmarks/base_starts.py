"""The shipped base codec's table: each regime packed from scratch, from the base with the whole model
stored, and from the base with only the delta stored (the default).

    python benchmarks/base_starts.py [OUT_STEM]

Reads ``benchmarks/rd.py`` results (:data:`ROWS` names them; every point is an 8-minute pack of the
``heldout`` split) and writes ``benchmarks/results/OUT_STEM.{json,md}`` (default ``base-starts``).
No packing happens here.

"Whole model stored" is not a separate pack: it is the same fine-tuned model as the delta row with
its weight blobs stored whole, so its archive is the delta archive minus the delta blobs plus the
whole blobs (``model_blob_bytes`` and ``model_blob_bytes_whole``, measured by
``archiver.bench.compare.model_blob_bytes`` on each archive), plus the graph where the delta archive
takes it from its base (``graph_from_base_bytes``, ``pyramid`` codec version 3). The latents and the
rest are the same bytes either way. A real ``pack --self-contained`` would also drop the delta's term from the
fine-tuning loss and so move the weights a little more; the sizes here are exact for this model.

Model bytes are the archive's ``model`` group as ``info`` counts it: weight blobs, ONNX graph and
spec. BD-rates (PSNR, Bjøntegaard, :func:`archiver.bench.metrics.bd_rate`) are over each start's own
points against the regime's classic points; "vs scratch" compares a start with the from-scratch
curve directly (negative: fewer bytes than from scratch at equal PSNR).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.metrics import bd_rate  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"

#: regime → start → result files (stems under benchmarks/results) whose archiver points make that row.
ROWS: dict[str, dict[str, list[str]]] = {
    "dataset": {
        "scratch": ["rd-dataset-pyramid-heldout"],
        "base": ["rd-dataset-pyramid-b1-heldout-q1", "rd-dataset-pyramid-b1-heldout-all"]
        + [f"rd-dataset-pyramid-b1-heldout-q{q}" for q in (3, 5, 6, 7)],
    },
    "album": {"scratch": ["rd-album-pyramid-scratch-heldout"], "base": ["rd-album-pyramid-b1-heldout"]},
    "tiny": {
        "scratch": ["rd-tiny-pyramid-scratch-heldout-q4", "rd-tiny-pyramid-scratch-heldout-q8"],
        # packed again with the graph named by the base (codec version 3); the earlier points stored it
        "base": ["rd-tiny-pyramid-b1-graph-heldout-q2", "rd-tiny-pyramid-b1-graph-heldout-q4"],
    },
}

#: Classic codecs the table compares with (the issue's two).
AGAINST = ("webp", "avif")


def _load(stems: list[str], folder: Path) -> tuple[list[dict], list[dict], list[str]]:
    """(archiver points by quality, classic points of the first result, stems found in ``folder``)."""
    found = [s for s in stems if (folder / f"{s}.json").exists()]
    results = [json.loads((folder / f"{s}.json").read_text()) for s in found]
    ours = {p["setting"]: p for r in results for p in r["points"] if p["codec"] == "archiver"}
    classic = [p for p in results[0]["points"] if p["codec"] != "archiver"] if results else []
    return [ours[q] for q in sorted(ours)], classic, found


def _row(point: dict, whole: bool) -> dict:
    """One point of a start; ``whole`` re-counts a delta archive with its blobs stored whole."""
    model = point["byte_breakdown"]["model"]
    size = point["bytes"]
    stored, full = point.get("model_blob_bytes"), point.get("model_blob_bytes_whole")
    if whole and stored is not None and full is not None:
        extra = full - stored + point.get("graph_from_base_bytes", 0)
        model += extra
        size += extra
    return {
        "quality": point["setting"], "bytes": size, "bpp": 8.0 * size / point["pixels"], "psnr": point["psnr"],
        "ms_ssim": point.get("ms_ssim"), "model_bytes": model, "model_share": model / size,
        "pack_s": point["pack_s"], "train_s": point["train_s"], "stop_reason": point["stop_reason"],
    }  # fmt: skip


def _bd(rows: list[dict], theirs: list[dict]) -> float | None:
    if len(rows) < 2 or len(theirs) < 2:
        return None
    return bd_rate([r["bpp"] for r in rows], [r["psnr"] for r in rows], [p["bpp"] for p in theirs], [p["psnr"] for p in theirs])


def regime_table(regime: str, files: dict[str, list[str]], folder: Path = RESULTS) -> dict:
    """The three starts of one regime: points, BD-rates vs :data:`AGAINST` and vs from scratch."""
    scratch, classic, found_s = _load(files["scratch"], folder)
    base, classic_b, found_b = _load(files["base"], folder)
    classic = classic or classic_b
    starts = {
        "from scratch": [_row(p, whole=False) for p in scratch],
        "base, whole model stored": [_row(p, whole=True) for p in base],
        "base + delta (default)": [_row(p, whole=False) for p in base],
    }
    out = {"regime": regime, "sources": found_s + found_b, "starts": {}}
    for name, rows in starts.items():
        bd = {c: _bd(rows, [p for p in classic if p["codec"] == c]) for c in AGAINST}
        bd["scratch"] = None if name == "from scratch" else _bd(rows, starts["from scratch"])
        out["starts"][name] = {"points": rows, "bd_rate_psnr": bd}
    return out


def markdown(tables: list[dict]) -> str:
    """The README's table: one line per point, BD-rates on each start's first line."""
    fmt = lambda v: "n/a" if v is None else f"{v:+.1f} %"  # noqa: E731
    lines = [
        "# Base codec: from scratch, from the base with the whole model, from the base with the delta",
        "",
        "- made by `python benchmarks/base_starts.py` from the `benchmarks/rd.py` results listed per regime",
        "- heldout split, 8-minute packs, whole `.nca` bytes; base `pyramid-b1` (trained on the train split only)",
        "- *whole model stored*: the delta row's archive with its weight blobs stored whole (same fine-tuned model)",
        "",
        "| regime | start | q | bpp | PSNR (dB) | model bytes (share) | pack (s) | BD-rate vs WebP | vs AVIF | vs from scratch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for t in tables:
        for name, s in t["starts"].items():
            for i, r in enumerate(s["points"]):
                bd = s["bd_rate_psnr"]
                cells = [fmt(bd["webp"]), fmt(bd["avif"]), "" if bd["scratch"] is None else fmt(bd["scratch"])]
                cells = cells if i == 0 else ["", "", ""]
                stop = "" if r["stop_reason"] == "time_limit" else f", {r['stop_reason']} at {r['train_s']:.0f} s"
                lines.append(
                    f"| {t['regime']} | {name} | {r['quality']} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
                    f"{r['model_bytes']:,} ({100 * r['model_share']:.2f} %) | {r['pack_s']:.0f}{stop} | " + " | ".join(cells) + " |"
                )  # fmt: skip
        lines.append(f"| | sources: {', '.join(f'`{s}`' for s in t['sources'])} | | | | | | | | |")
    lines += ["", "BD-rates are over each start's own points (PSNR); n/a: fewer than two points or no overlap.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stem = args[0] if args else "base-starts"
    tables = [regime_table(regime, files) for regime, files in ROWS.items()]
    (RESULTS / f"{stem}.json").write_text(json.dumps({"command": "python benchmarks/base_starts.py " + " ".join(args),
                                                       "tables": tables}, indent=1))  # fmt: skip
    text = markdown(tables)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
