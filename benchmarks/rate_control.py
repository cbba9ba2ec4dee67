"""``pack --target-psnr`` and ``pack --max-bytes`` measured on a regime's images.

    python benchmarks/rate_control.py target --regime dataset --targets 32,36 [--time-limit 8m]
    python benchmarks/rate_control.py budget --regime album --budgets 1.0,2.0 [--time-limit 2m]

``target``: one pack per target (``--codec pyramid``, heldout split). Reported: whole-archive bytes
and bpp, lowest and mean PSNR of the images, images below the target, and the comparison the
issue asks for: the *same trained codec* with one gain for every image, the coarsest at which
every image the per-image pass brought to the target still reaches it (refined at that gain, as a
plain pack would be; :func:`archiver.codecs.pyramid.rate.uniform_baseline`). Both sides' latents are counted
as exact code lengths under their own tables, plus their tables' bytes; the uniform archive's size
is the per-image archive's with those two terms swapped (model, index and the rest are the same).

``budget``: one pack per budget, given in bits per coded pixel of the regime (the byte budget is
``bpp · pixels / 8``). Reported: the archive's bytes against the budget (never over, at most 1 %
under), PSNR, and the packs' gain. How well the codec is trained does not change whether the
budget is met, so these packs may be short.

Writes ``benchmarks/results/rate-<mode>-<regime>.{json,md}`` (command, commit, machine, date).
Exits 0 without measuring when the source photos are absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.rd import git_commit, machine  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def _pack(folder: Path, out: Path, **options) -> tuple[dict, dict]:
    """Pack ``folder``; returns (PackReport fields, archive_info)."""
    from archiver.config import config_for_quality
    from archiver.inspect import archive_info
    from archiver.pack import pack

    baseline = options.pop("target_baseline", False)
    cfg = dataclasses.replace(config_for_quality(None, codec="pyramid", **options), target_baseline=baseline)
    started = time.monotonic()
    report = pack(folder, out, cfg, force=True)
    info = archive_info(out)
    # the quality pack used (chosen from the budget when not given)
    quality = info["config"]["quality"]
    return {"seconds": round(time.monotonic() - started, 1), "quality": quality, "training": report.training}, info


def run_target(folder: Path, work: Path, targets: list[float], time_limit: float) -> list[dict]:
    rows = []
    for target in targets:
        res, info = _pack(folder, work / f"t{target:g}.nca", target_psnr=target, time_limit=time_limit, target_baseline=True)
        t = res["training"]["target"]
        size = info["archive_bytes"]
        per, uni = t["per_image"], t["uniform"]
        uniform_size = size - per["latent_bits"] / 8 - per["table_bytes"] + uni["latent_bits"] / 8 + uni["table_bytes"]
        rows.append({
            "target_psnr": target, "quality": res["quality"], "archive_bytes": size, "bpp": info["bpp"],
            "min_psnr": info["min_psnr"], "mean_psnr": info["mean_psnr"], "unreached": len(t["unreached"]),
            "gain_codes": t["gain_codes"], "uniform_gain_code": uni["gain_code"],
            "uniform_min_psnr_of_reached": uni["min_psnr_reached"], "uniform_mean_psnr": uni["mean_psnr"],
            "uniform_archive_bytes": round(uniform_size), "saving": round(1 - size / uniform_size, 4),
            "stop_reason": res["training"]["stop_reason"], "pack_seconds": res["seconds"],
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_budget(folder: Path, work: Path, budgets_bpp: list[float], pixels: int, time_limit: float) -> list[dict]:
    rows = []
    for bpp in budgets_bpp:
        budget = int(bpp * pixels / 8)
        res, info = _pack(folder, work / f"b{bpp:g}.nca", max_bytes=budget, time_limit=time_limit)
        b = res["training"]["budget"]
        rows.append({
            "budget_bpp": bpp, "max_bytes": budget, "archive_bytes": info["archive_bytes"],
            "fill": round(info["archive_bytes"] / budget, 5), "quality": res["quality"], "log2_gain": b["log2_gain"],
            "fit_trials": b["trials"], "mean_psnr": info["mean_psnr"], "min_psnr": info["min_psnr"],
            "pack_seconds": res["seconds"],
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _markdown(doc: dict) -> str:
    lines = [f"# rate control: {doc['mode']} on {doc['regime']} ({doc['split']} split)", "",
             f"`{doc['command']}` — commit {doc['commit']}, {doc['machine']}, {doc['date']}; "
             f"{doc['n_images']} images, {doc['pixels']:,} px, packs of {doc['time_limit_s']:g} s", ""]  # fmt: skip
    if doc["mode"] == "target":
        lines += ["| target dB | quality | archive bytes | bpp | min PSNR | mean PSNR | below | one gain for all: bytes | its min PSNR | saving |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in doc["rows"]:
            lines.append(f"| {r['target_psnr']:g} | {r['quality']} | {r['archive_bytes']:,} | {r['bpp']:.3f} | "
                         f"{r['min_psnr']:.2f} | {r['mean_psnr']:.2f} | {r['unreached']} | {r['uniform_archive_bytes']:,} | "
                         f"{r['uniform_min_psnr_of_reached']:.2f} | {100 * r['saving']:.1f} % |")  # fmt: skip
    else:
        lines += ["| budget bpp | max bytes | archive bytes | fill | quality | log2 gain | mean PSNR | min PSNR |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in doc["rows"]:
            lines.append(f"| {r['budget_bpp']:g} | {r['max_bytes']:,} | {r['archive_bytes']:,} | {100 * r['fill']:.2f} % | "
                         f"{r['quality']} | {r['log2_gain']:+.3f} | {r['mean_psnr']:.2f} | {r['min_psnr']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from archiver.config import parse_duration

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("target", "budget"))
    ap.add_argument("--regime", default="dataset", choices=("dataset", "album", "tiny"))
    ap.add_argument("--targets", default="32,36", help="--target-psnr values (dB), comma-separated")
    ap.add_argument("--budgets", default="1.0", help="budgets in bits per coded pixel, comma-separated")
    ap.add_argument("--time-limit", default="8m")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of the regime")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--src", default=str(DEFAULT_SRC_DIR))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    if not Path(args.src).is_dir():
        print(f"{args.src}: no source photos; nothing measured")
        return 0
    time_limit = parse_duration(args.time_limit)
    with tempfile.TemporaryDirectory(prefix="rate-") as tmp:
        folder = Path(tmp) / "src"
        paths = build_regime(args.regime, args.src, folder, limit=args.limit, split=args.split)
        from PIL import Image

        pixels = 0
        for path in paths:
            with Image.open(path) as im:
                pixels += im.width * im.height
        work = Path(tmp) / "out"
        work.mkdir()
        if args.mode == "target":
            rows = run_target(folder, work, [float(v) for v in args.targets.split(",")], time_limit)
        else:
            rows = run_budget(folder, work, [float(v) for v in args.budgets.split(",")], pixels, time_limit)
    doc = {
        "mode": args.mode, "regime": args.regime, "split": args.split, "n_images": len(paths), "pixels": pixels,
        "time_limit_s": time_limit, "command": "python benchmarks/rate_control.py " + " ".join(argv or sys.argv[1:]),
        "commit": git_commit(), "machine": machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }  # fmt: skip
    stem = RESULTS / f"rate-{args.mode}-{args.regime}{'-' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(_markdown(doc))
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
