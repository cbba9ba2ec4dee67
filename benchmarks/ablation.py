"""The seeds' ablations on the ``dataset`` regime, each variant with the same training budget.

    python benchmarks/ablation.py [--time-limit 5m] [--limit N] [--variants cae,cae+res,...]

Variants (all at ``--quality 4`` unless said):

- ``cae``            plain CAE: no residual blocks (ResBlock paper, Table 2, first row)
- ``cae+res``        CAE + ResBlocks: the default codec, at the size ``--model-size auto`` picks for
  the regime's pixel count (Table 2, second row); the variants below change one thing from it
- ``residual-off``   ResBlocks without their skip connection (is residual learning worth it?)
- ``int8-off``       decoder weights stored as float32 (what int8 weights cost in quality)
- ``small``, ``base``, ``large`` those presets (decoder sizes; with ``cae+res`` at
  the auto size, the decoder-capacity curve)
- ``no-rate-term``   trained on distortion only, latents still entropy-coded (GAN codec paper)
- ``no-entropy-coding`` (measured on ``cae+res``'s archive): its latents stored as int8 + zstd
  instead of range-coded with the learned tables — the archive it would make, byte for byte counted
- ``denoiser``       ``cae+res`` + ``--denoiser`` (a post-filter on the decoded pixels; trained for a fifth more time, kept
  only if it pays for its bytes)
- ``gan``            ``cae+res`` + ``--gan --perceptual msssim`` (ResBlock paper, Table 2, third row;
  the discriminator at width 16 instead of the paper's 64: on this CPU the paper's is ~16× the
  compute and leaves the adversarial phase a few dozen steps in a short budget)
- ``refine-off``     ``cae+res`` without its per-image latent refinement against the int8 decoder
  (on by default since 2026-11-22: at most 30 steps an image; earlier results call the opposite
  variant ``refine``)
- ``<variant>@q2``   ``cae+res``, ``denoiser`` and ``gan`` again at ``--quality 2`` (a second rate)

Not yet available: a flattened-vector latent (one global vector per image instead of a spatial grid). Reports CR (input bytes / archive bytes, model
included), bpp, PSNR, SSIM, MS-SSIM and decode ms per image; writes
``benchmarks/results/ablation.{json,md}`` and ``ablation-grid.png`` (originals beside the plain,
denoised and GAN reconstructions of a few images, 2× enlarged).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.classic import load_rgb  # noqa: E402
from benchmarks.rd import archiver_point, git_commit, machine  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

MISSING = ["flattened-vector latent"]
#: Columns of the image grid: variant name → column title.
GRID = {"cae+res": "plain", "denoiser": "denoiser", "gan": "GAN + MS-SSIM"}
GRID_IMAGES = 4


def variants(time_limit: float, seed: int, pixels: int) -> dict:
    """The variants, built around the decoder ``pack`` would choose for ``pixels`` coded pixels."""
    from archiver.codecs.autoencoder import resolve as resolve_model_size
    from archiver.codecs.autoencoder.levels import LAMBDAS as QUALITY_LAMBDAS
    from archiver.config import MODEL_PRESETS, config_for_quality

    base = resolve_model_size(config_for_quality(4, time_limit=time_limit, seed=seed, codec="autoencoder"), pixels)
    base = dataclasses.replace(base, model_size="custom")
    m, t = base.model, base.train
    q2 = dataclasses.replace(base, quality=2, train=dataclasses.replace(t, lmbda=QUALITY_LAMBDAS[2]))

    def denoised(c):
        return dataclasses.replace(c, train=dataclasses.replace(c.train, denoiser=True))

    def gan(c):
        return dataclasses.replace(c, train=dataclasses.replace(c.train, gan=True, perceptual="msssim", disc_width=16))

    return {
        "cae": dataclasses.replace(base, model=dataclasses.replace(m, res_blocks=0)),
        "cae+res": base,
        "residual-off": dataclasses.replace(base, model=dataclasses.replace(m, residual=False)),
        "int8-off": dataclasses.replace(base, int8_weights=False),
        "small": dataclasses.replace(base, model=MODEL_PRESETS["small"]),
        "base": dataclasses.replace(base, model=MODEL_PRESETS["base"]),
        "large": dataclasses.replace(base, model=MODEL_PRESETS["large"]),
        "no-rate-term": dataclasses.replace(base, train=dataclasses.replace(t, rate_weight=0.0)),
        "denoiser": denoised(base),
        "gan": gan(base),
        "refine-off": dataclasses.replace(base, train=dataclasses.replace(t, refine_steps=0)),
        "cae+res@q2": q2,
        "denoiser@q2": denoised(q2),
        "gan@q2": gan(q2),
    }


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ssim as _ssim

    ta = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].float()
    return float(_ssim(ta, tb, data_range=255, win_size=min(11, min(a.shape[:2]) // 2 * 2 - 1)))


def _training_json(archive: Path) -> str:
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(archive) as reader:
        return json.dumps(reader.training)


def raw_latent_bytes(archive: Path) -> int:
    """Bytes the latents would take stored as int8 (int16 if needed) + zstd-19, one frame per image."""
    from archiver.container.format import EntryKind
    from archiver.container.reader import ArchiveReader
    from archiver.decode import ArchiveDecoder

    total = 0
    cctx = zstandard.ZstdCompressor(level=19)
    with ArchiveReader(archive) as reader:
        dec = ArchiveDecoder(reader)
        dec._ensure()
        for e in reader.entries:
            if e.kind is EntryKind.IMAGE:
                latent = dec._prepare([e])[1][0]
                dtype = np.int8 if np.abs(latent).max() < 128 else np.int16
                total += len(cctx.compress(latent.astype(dtype).tobytes()))
    return total


def image_grid(paths: list[Path], work: Path, out: Path) -> bool:
    """PNG grid: one row per image, columns original + :data:`GRID` variants present, 2× nearest."""
    from PIL import Image, ImageDraw

    cols = [("original", None)] + [(title, work / f"{name}-out") for name, title in GRID.items()
                                    if (work / f"{name}-out").is_dir()]  # fmt: skip
    if len(cols) < 2:
        return False
    rows = paths[:GRID_IMAGES]
    h, w = load_rgb(rows[0]).shape[:2]
    scale, label = 2, 14
    grid = Image.new("RGB", (len(cols) * w * scale, label + len(rows) * h * scale), "white")
    draw = ImageDraw.Draw(grid)
    for j, (title, folder) in enumerate(cols):
        draw.text((j * w * scale + 4, 1), title, fill="black")
        for i, p in enumerate(rows):
            im = Image.fromarray(load_rgb(p if folder is None else folder / p.name))
            grid.paste(im.resize((w * scale, h * scale), Image.NEAREST), (j * w * scale, label + i * h * scale))
    grid.save(out)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", default="5m", help="training budget per variant")
    ap.add_argument("--limit", type=int, default=None, help="first N images of the dataset regime")
    ap.add_argument("--variants", default=None, help="comma-separated subset")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    from archiver.config import parse_duration

    budget = parse_duration(args.time_limit)
    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()  # at the start: the code this run loads
    rows = []
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        work = Path(tmp)
        paths = build_regime("dataset", args.src, work / "images", seed=args.seed, limit=args.limit)
        pixels = sum(load_rgb(p).shape[0] * load_rgb(p).shape[1] for p in paths)
        chosen = variants(budget, args.seed, pixels)
        if args.variants:
            chosen = {k: chosen[k] for k in args.variants.split(",")}
        for name, cfg in chosen.items():
            print(f"variant {name}", file=sys.stderr, flush=True)
            p = archiver_point(paths, work / "images", work, cfg.quality, budget, args.seed, cfg=cfg, name=name)
            out = work / f"{name}-out"
            p["ssim"] = float(np.mean([ssim(load_rgb(q), load_rgb(out / q.name)) for q in paths]))
            p["variant"] = name
            p["cr"] = p["input_bytes"] / p["bytes"]
            p["decode_ms_per_image"] = 1000 * p["extract_s"] / p["images"]
            summary = json.loads(_training_json(Path(p["archive"])))
            if "denoiser" in summary:
                p["denoiser"] = summary["denoiser"]
            if "gan" in summary:
                p["gan"] = summary["gan"]
            rows.append(p)
            if name == "cae+res":
                raw = raw_latent_bytes(Path(p["archive"]))
                size = p["bytes"] - p["latent_bytes"] + raw
                rows.append({**p, "variant": "no-entropy-coding", "bytes": size, "bpp": 8 * size / p["pixels"],
                             "cr": p["input_bytes"] / size, "latent_bytes": raw})  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        grid = image_grid(paths, work, args.out / "ablation-grid.png")
    result = {
        "regime": "dataset", "date": started.isoformat(timespec="seconds"), "commit": commit,
        "machine": machine(), "command": "python benchmarks/ablation.py " + " ".join(argv or sys.argv[1:]),
        "time_limit": budget, "rows": rows, "missing": MISSING,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(result, indent=1, default=float))
    md = [f"# Ablations, regime `dataset` ({len(paths)} images), {budget:.0f} s of training per variant", "",
          f"- command: `{result['command']}`; date {result['date']}, commit {result['commit']}", "",
          "| variant | CR | bpp | PSNR | SSIM | MS-SSIM | decode ms/image | steps (stop) |",
          "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ms = f"{r['ms_ssim']:.4f}" if r.get("ms_ssim") is not None else ""
        md.append(f"| {r['variant']} | {r['cr']:.2f} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {ms} | "
                  f"{r['decode_ms_per_image']:.1f} | {r['steps']} ({r['stop_reason']}) |")  # fmt: skip
    for r in rows:
        if "denoiser" in r:
            d = r["denoiser"]
            md.append(f"- {r['variant']}: denoiser {'kept' if d['kept'] else 'not kept'}, "
                      f"{d['gain_db']:+.3f} dB for {d['bytes']} bytes, {d['steps']} steps")  # fmt: skip
        if "gan" in r:
            g = r["gan"]
            md.append(f"- {r['variant']}: adversarial phase from step {g['start_step']}, {g['disc_steps']} "
                      f"discriminator steps (width {g['disc_width']}), fell back at {g['fell_back_at']}")  # fmt: skip
    if grid:
        md += ["", "![originals and reconstructions](ablation-grid.png)"]
    md += ["", "Not measured yet (the feature does not exist yet): " + ", ".join(MISSING) + ".", ""]
    (args.out / "ablation.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
