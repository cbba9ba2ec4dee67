"""How fast does the ``pyramid`` coder's wavefront order entropy-decode, and what would a narrower
context network gain? Decoding alone (no synthesis, no files), one thread, synthetic grids.

    python benchmarks/entropy_speed.py [--hidden 16,12,8] [--runs 3]

For each hidden width: a random fixed-point context network of the default spec's shape (six
levels, wavefront order, 64-position tiles) and Laplace-distributed grids (scale 3 at full size,
smaller at coarser levels; tables counted from them, as a pack does). Cases, each decoded
``--runs`` times, median reported in decoded megapixels (image pixels) per second:

- ``album``: six 512×768 images, each its own stream (a photo album: every photo is a group),
  decoded in one pass (:meth:`PyramidCoder.decode_streams`) and one stream after the other;
- ``crops``: 96 images of 128×128 in eight groups of 12 (the dataset regime's groups), in one pass.

The numbers depend on the positions and the network's width, not on the values, so random weights
measure what a trained network would cost. Writes ``benchmarks/results/entropy-speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from archiver.codecs.pyramid.coder import ContextNet, HistogramCounter, PyramidCoder  # noqa: E402
from archiver.codecs.pyramid.plan import PYRAMID_PRESETS, PyramidSpec, context_features_count  # noqa: E402
from archiver.decode import _single_threaded_blas  # noqa: E402
from benchmarks.api_speed import _median_seconds  # noqa: E402


def coder_for(spec: PyramidSpec, images: list, seed: int = 0) -> PyramidCoder:
    """A random context network of ``spec``'s shape with tables counted from ``images``."""
    rng = np.random.default_rng(seed)
    cin, layers = context_features_count(spec, 0), []
    for cout in (spec.context_hidden, spec.context_hidden, 2):
        layers.append((rng.normal(0, 0.5, (cout, cin)), rng.normal(0, 0.5, cout)))
        cin = cout
    net = ContextNet.from_float([layers])
    counter = HistogramCounter()
    for grids in images:
        PyramidCoder(spec, net).count(grids, counter)
    return PyramidCoder(spec, net, counter.tables())


def grids(rng, spec: PyramidSpec, h: int, w: int) -> list[np.ndarray]:
    return [np.round(rng.laplace(0, 3.0 / (1 + l), (h >> l, w >> l))).astype(np.int32) for l in range(spec.levels)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", default="16,12,8")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for hidden in [int(h) for h in args.hidden.split(",")]:
        spec = PyramidSpec.from_dict({**PYRAMID_PRESETS["default"].to_dict(), "context_hidden": hidden})
        album = [grids(rng, spec, 512, 768) for _ in range(6)]
        crops = [grids(rng, spec, 128, 128) for _ in range(96)]
        coder = coder_for(spec, album + crops)
        album_streams = [(coder.encode_many([g]), 512, 768, 1) for g in album]
        crop_streams = [(coder.encode_many(crops[k : k + 12]), 128, 128, 12) for k in range(0, 96, 12)]
        with _single_threaded_blas():
            coder.decode_streams(album_streams[:1])  # plans made once per size (cached), as in a reader
            coder.decode_streams(crop_streams[:1])
            together = _median_seconds(lambda: coder.decode_streams(album_streams), args.runs)
            alone = _median_seconds(lambda: [coder.decode_streams([s]) for s in album_streams], args.runs)
            crops_s = _median_seconds(lambda: coder.decode_streams(crop_streams), args.runs)
        row = {"hidden": hidden, "album_together_mpx_s": 6 * 512 * 768 / 1e6 / together,
               "album_alone_mpx_s": 6 * 512 * 768 / 1e6 / alone, "crops_mpx_s": 96 * 128 * 128 / 1e6 / crops_s}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    from archiver.bench.compare import machine

    record = {
        "command": "python benchmarks/entropy_speed.py " + " ".join(sys.argv[1:]), "commit": commit.stdout.strip(),
        "machine": machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows,
    }  # fmt: skip
    out = REPO / "benchmarks" / "results"
    (out / "entropy-speed.json").write_text(json.dumps(record, indent=1) + "\n")
    m = record["machine"]
    lines = [
        "# Wavefront entropy decoding speed (one thread, synthetic grids, decoded Mpx/s, median of runs)", "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}, commit {record['commit']}, machine: {m['platform']}, {m['cores']} cores",
        "", "| context hidden width | album, streams in one pass | album, one stream at a time | 96 crops of 128², 8 groups in one pass |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['hidden']} | {r['album_together_mpx_s']:.2f} | {r['album_alone_mpx_s']:.2f} | {r['crops_mpx_s']:.2f} |")
    (out / "entropy-speed.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
