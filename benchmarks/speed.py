"""Extraction speed and memory: ONNX Runtime vs the torch path vs Pillow decoding JPEG and AVIF.

    python benchmarks/speed.py [--regime album] [--time-limit 60] [--runs 3] [--archive A.nca]

Packs the regime (a short training: speed does not depend on how well the codec is trained, only on
its configuration and the image sizes) unless ``--archive`` is given, then, ``--runs`` times each,
median reported:

- whole archive: ``archiver extract`` in a fresh process (imports, model load, entropy decoding,
  network, PNG writing) → decoded megapixels per second, and the process's peak RSS;
- one image: ``archiver extract A.nca -o DIR NAME`` in a fresh process (latency including start-up
  and opening), and in process (open archive → pixels);
- network only: ONNX Runtime vs the torch int8 decoder on the same latents (Mpx/s);
- Pillow decoding the same images stored as JPEG (quality 75) and AVIF (quality 50) (Mpx/s).

Writes ``benchmarks/results/speed-<regime>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import statistics
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
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402


def _timed_process(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    # The child imports archiver from this checkout, not from wherever it is installed.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-m", "archiver", *args], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) * 1024  # ru_maxrss is in KiB on Linux


def measure(archive: Path, runs: int, work: Path) -> dict:
    from archiver.container.format import EntryKind
    from archiver.container.reader import ArchiveReader
    from archiver.decode import ArchiveDecoder

    with ArchiveReader(archive) as reader:
        images = [e for e in reader.entries if e.kind is EntryKind.IMAGE]
    mpx = sum(e.pixels for e in images) / 1e6
    with ArchiveReader(archive) as reader:
        model = reader.config["model"]
        size = reader.config.get("model_size", "large")
    result: dict = {"archive": str(archive), "images": len(images), "megapixels": mpx, "runs": runs,
                    "model": model, "model_size": size}  # fmt: skip

    walls, peaks = [], []
    for i in range(runs):
        wall, peak = _timed_process(["extract", str(archive), "-o", str(work / f"all{i}"), "--quiet"])
        walls.append(wall)
        peaks.append(peak)
    result["extract_all_s"] = statistics.median(walls)
    result["extract_all_mpx_s"] = mpx / result["extract_all_s"]
    result["extract_peak_rss_mib"] = max(peaks) / 2**20

    one = images[len(images) // 2]
    walls = [_timed_process(["extract", str(archive), "-o", str(work / f"one{i}"), one.name, "--quiet"])[0]
             for i in range(runs)]  # fmt: skip
    result["one_image_process_s"] = statistics.median(walls)
    result["one_image"] = {"name": one.name, "size": f"{one.width}x{one.height}"}
    lat = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with ArchiveReader(archive) as reader:
            ArchiveDecoder(reader).image(next(e for e in reader.entries if e.name == one.name))
        lat.append(time.perf_counter() - t0)
    result["one_image_in_process_s"] = statistics.median(lat)

    # Network only, same latents: ONNX Runtime vs torch.
    with ArchiveReader(archive) as reader:
        dec = ArchiveDecoder(reader)
        dec._ensure()
        prepared = [(e, dec._prepare([e])[1][0]) for e in images]
        from archiver.config import ModelConfig
        from archiver.codecs.autoencoder.inference import decode_latent, int8_decoder

        torch_dec = int8_decoder(ModelConfig.from_dict(reader.config["model"]), reader.model_arrays())
    for name, fn in (("onnx", lambda e, y: dec._decoder.decode(y, e.height, e.width)),
                     ("torch", lambda e, y: decode_latent(torch_dec, y, e.height, e.width))):  # fmt: skip
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for e, y in prepared:
                fn(e, y)
            times.append(time.perf_counter() - t0)
        result[f"network_{name}_mpx_s"] = mpx / statistics.median(times)
    diffs = [np.abs(dec._decoder.decode(y, e.height, e.width).astype(int) - decode_latent(torch_dec, y, e.height, e.width)).max()
             for e, y in prepared[:5]]  # fmt: skip
    result["onnx_vs_torch_max_abs_diff"] = int(max(diffs))
    return result


def pillow_decode(paths: list[Path], runs: int) -> dict:
    out = {}
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    mpx = sum(a.shape[0] * a.shape[1] for a in arrays) / 1e6
    for fmt, kw in (("JPEG", {"quality": 75}), ("AVIF", {"quality": 50})):
        blobs = []
        for a in arrays:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format=fmt, **kw)
            blobs.append(buf.getvalue())
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for b in blobs:
                Image.open(io.BytesIO(b)).load()
            times.append(time.perf_counter() - t0)
        out[f"pillow_{fmt.lower()}_mpx_s"] = mpx / statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regime", default="album")
    ap.add_argument("--time-limit", default="60")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--archive", type=Path, default=None)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    from archiver.codecs.autoencoder.architecture import decoder_macs_per_pixel
    from archiver.config import ModelConfig, config_for_quality, parse_duration
    from archiver.pack import pack

    started = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()  # at the start: the code this run loads
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        work = Path(tmp)
        paths = build_regime(args.regime, args.src, work / "images", limit=args.limit)
        archive = args.archive
        if archive is None:
            archive = work / "a.nca"
            pack(work / "images", archive, config_for_quality(4, time_limit=parse_duration(args.time_limit), codec="autoencoder"))
        result = measure(archive, args.runs, work)
        result.update(pillow_decode(paths, args.runs))
    result.update({
        "regime": args.regime, "date": started.isoformat(timespec="seconds"), "commit": commit,
        "machine": machine(), "command": "python benchmarks/speed.py " + " ".join(argv or sys.argv[1:]),
        "decoder_macs_per_pixel": decoder_macs_per_pixel(ModelConfig.from_dict(result.pop("model"))),
    })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"speed-{args.regime}.json").write_text(json.dumps(result, indent=1))
    md = [f"# Extraction speed, regime `{args.regime}`", "",
          f"- command: `{result['command']}`; date {result['date']}, commit {result['commit']}, "
          f"{result['machine']['cores']} cores; median of {args.runs} runs",
          f"- {result['images']} images, {result['megapixels']:.2f} Mpx; {result['model_size']} decoder, "
          f"{result['decoder_macs_per_pixel']:.0f} MAC/pixel", "",
          "| measure | value |", "|---|---|"]  # fmt: skip
    for key, value in result.items():
        if isinstance(value, float):
            md.append(f"| {key} | {value:.3f} |")
        elif isinstance(value, int) and key not in ("runs",):
            md.append(f"| {key} | {value} |")
    (args.out / f"speed-{args.regime}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
