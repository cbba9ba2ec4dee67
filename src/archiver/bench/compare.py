"""The archiver against the classic codecs on one set of images: points, BD-rates, report.

Shared by ``archiver bench`` (a user's own folder) and ``benchmarks/rd.py`` (the project's regimes).
An archiver point packs the whole folder at one ``--quality`` (the whole ``.nca`` file counts, model
included), extracts it and measures it exactly as the classic sweep measures the codecs.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from .classic import load_rgb
from .metrics import bd_rate, mean_psnr, ms_ssim, psnr, rate_at_quality

__all__ = ["machine", "archiver_point", "bd_table", "markdown", "plot"]


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


def archiver_point(
    paths: list[Path], src: Path, work: Path, quality: int, time_limit: float, seed: int, cfg=None, name: str = "",
    progress=None,
) -> dict:
    """Pack ``src`` at ``quality`` (or with ``cfg``), extract, and measure like the classic sweep does."""
    from archiver.config import config_for_quality
    from archiver.extract import extract
    from archiver.pack import pack

    archive = work / f"{name or f'q{quality}'}.nca"
    cfg = cfg or config_for_quality(quality, time_limit=time_limit, seed=seed)
    t0 = time.monotonic()
    report = pack(src, archive, cfg, force=True, progress=progress)
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

    from archiver.inspect import byte_breakdown

    size = archive.stat().st_size
    with ArchiveReader(archive) as reader:
        model_size = reader.config.get("model_size", "large")
        breakdown = byte_breakdown(reader, size)  # where the bytes went, by kind (info's other_breakdown)
        stored, whole = model_blob_bytes(reader)
        graph_from_base = base_graph_bytes(reader)
    setting = f"psnr>={cfg.target_psnr:g}" if getattr(cfg, "target_psnr", 0) else quality
    return {
        "codec": "archiver", "setting": setting, "n_images": len(paths), "bytes": size, "pixels": pixels,
        "min_psnr": float(np.min(psnrs)),
        "bpp": 8.0 * size / pixels, "psnr": mean_psnr(psnrs),
        "ms_ssim": float(np.nanmean(msssims)) if not all(np.isnan(msssims)) else None,
        "model_bytes": None, "latent_bytes": report.latent_bytes,
        "pack_s": pack_s, "extract_s": extract_s, "extract_mpx_s": pixels / 1e6 / extract_s,
        "train_s": t["train_seconds"], "steps": t["steps"], "stop_reason": t["stop_reason"],
        # crops per step grow as the crop shrinks (see train_codec): the same pixels per step
        "train_mpx_s": t["steps"] * cfg.train.batch * max(1, cfg.train.crop // crop) ** 2 * crop * crop / 1e6
        / max(t["train_seconds"], 1e-9),
        "crop": crop, "time_limit": cfg.train.time_limit, "archive": str(archive),
        "input_bytes": report.input_bytes, "images": report.images, "model_size": model_size,
        "warm_start": (t.get("warm_start") or {}).get("name"), "self_contained": bool(getattr(cfg, "self_contained", False)),
        "entropy_model": t.get("entropy_model"),
        "codec_name": cfg.codec, "byte_breakdown": breakdown,
        # the weight blobs as stored (a difference from a base codec, or whole) and stored whole
        "model_blob_bytes": stored, "model_blob_bytes_whole": whole,
        # the graph a self-contained archive would store, where this one takes it from its base
        "graph_from_base_bytes": graph_from_base,
    }  # fmt: skip


def model_blob_bytes(reader) -> tuple[int, int]:
    """(bytes of the archive's decoder and entropy weight blobs as stored, the same model's blobs
    stored whole): equal unless the archive stores its model as a difference from a base codec. The
    latents and everything else are the same bytes either way."""
    from archiver.codec.weights import pack_arrays

    side = reader.codec
    level = int(reader.config.get("zstd_level", 19))
    names = side.model_names
    stored = sum(len(pack_arrays(reader.model_arrays(name), level)[0]) for name in names)
    if not side.desc.base:
        return stored, stored
    return stored, sum(len(pack_arrays(side.model_arrays(name), level)[0]) for name in names)


def base_graph_bytes(reader) -> int:
    """Bytes ``/model/decoder_onnx`` would take (zstd, the archive's level) in an archive that takes
    its graph from its base instead; 0 when the archive stores its graph."""
    side = reader.codec
    if "graph" not in side.desc.base:
        return 0
    from archiver.container.writer import graph_blob

    return len(graph_blob(side.graph(), int(reader.config.get("zstd_level", 19))))


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
        f"# Rate–distortion, {result.get('title') or 'regime `%s`' % result['regime']}",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}, commit {result['commit']}, machine: {result['machine']['platform']}, "
        f"{result['machine']['cores']} cores, torch {result['machine']['torch']}",
        f"- images: {result['n_images']} ({result['pixels']} pixels); archiver bytes = whole `.nca` file, model included",
        *([f"- source photos: the `{result['split']}` split of the dev set (see `benchmarks/regimes.py`)"]
          if result.get("split", "all") != "all" else []),
        *([f"- classic codec points reused from `{result['classic_reused_from']}` (same images)"]
          if result.get("classic_reused_from") else []),
        "",
        "| codec | setting | bpp | PSNR (dB) | MS-SSIM | notes |",
        "|---|---|---|---|---|---|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["codec"] != "archiver", p["codec"], p["bpp"])):
        note = ""
        if p["codec"] == "archiver":
            warm = f" (warm start: {p['warm_start']}{', whole model stored' if p.get('self_contained') else ''})" if p.get("warm_start") else ""
            em = p.get("entropy_model")
            if em and "candidates" in em:  # latent bytes the context tables saved against one table per channel
                plain, best = em["candidates"]["S1K1"], em["candidates"][em["chosen"]]
                saved = 1 - (best["symbol_bytes"] + best["table_bytes"]) / (plain["symbol_bytes"] + plain["table_bytes"])
                warm += f"; entropy {em['chosen']} ({100 * saved:.1f} % fewer latent bytes)"
            elif em:  # another codec's entropy model (archiver.codecs)
                warm += f"; entropy {em.get('chosen')}"
            # a codec with model-size presets names the preset it resolved; the others stay "auto"
            decoder = f"{p['codec_name']} codec" if p.get("model_size") in (None, "auto") else f"{p['model_size']} decoder"
            note = (f"{decoder}{warm}; pack {p['pack_s']:.0f} s ({p['steps']} steps, {p['stop_reason']}, "
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
    ax.set_title(f"{result.get('title') or 'regime ' + result['regime']}: {result['n_images']} images")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


