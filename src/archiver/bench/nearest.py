"""How an archived image's bytes compare with JPEG's at the same PSNR (``scripts/demo.sh``'s last step).

For each named image of an archive: its bytes of record (its latent range-coded alone with the
archive's tables, and its kept metadata, as
:meth:`~archiver.container.reader.ArchiveReader.read_record` gives it; the model not included, and
not the share of its group that ``archiver list`` shows) and its PSNR as pack measured it through
the extract path, then the JPEG quality whose PSNR
on the original matches it, found by bisection over Pillow's JPEG qualities 1..95 (PSNR rises with
quality; :data:`archiver.bench.classic.CODECS`' ``jpeg``: ``optimize=True``, 4:2:0), and JPEG's bpp
at exactly that PSNR, interpolated in log-bpp between the two bracketing qualities.

Command line: ``python -m archiver.bench.nearest ARCHIVE SOURCE_FOLDER NAME [NAME ...]``, one line per
name, e.g. ``cat.png: archiver 0.93 bpp @ 32.40 dB; JPEG needs 0.74 bpp at that PSNR (quality 78):
the archiver's bytes are 1.26× JPEG's``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .classic import CODECS, encode_decode, load_rgb
from .metrics import psnr

__all__ = ["JpegMatch", "jpeg_at_psnr", "compare_with_jpeg", "main"]

#: Pillow's JPEG quality range searched.
JPEG_QUALITIES = (1, 95)


@dataclass(frozen=True)
class JpegMatch:
    """JPEG at a target PSNR: ``bpp`` there (None: not reached at quality 95), the lowest ``quality``
    reaching it, and that quality's own ``quality_bpp`` and ``quality_psnr``."""

    target: float
    bpp: float | None
    quality: int
    quality_bpp: float
    quality_psnr: float


def _jpeg(rgb: np.ndarray, quality: int) -> tuple[float, float]:
    """(bpp, PSNR in dB) of ``rgb`` through JPEG at ``quality``."""
    data, decoded, _, _ = encode_decode(Image.fromarray(rgb), CODECS["jpeg"], quality)
    return len(data) * 8 / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, decoded)


def jpeg_at_psnr(rgb: np.ndarray, target: float) -> JpegMatch:
    """JPEG's bpp for ``rgb`` (H, W, 3 uint8) at ``target`` dB: bisection for the lowest quality
    reaching it, then log-bpp interpolated against PSNR between it and the quality below."""
    lo, hi = JPEG_QUALITIES
    points = {q: _jpeg(rgb, q) for q in (lo, hi)}
    if points[hi][1] < target:
        return JpegMatch(target, None, hi, *points[hi])
    if points[lo][1] >= target:
        return JpegMatch(target, points[lo][0], lo, *points[lo])
    while hi - lo > 1:  # invariant: PSNR(lo) < target <= PSNR(hi)
        mid = (lo + hi) // 2
        points[mid] = _jpeg(rgb, mid)
        lo, hi = (mid, hi) if points[mid][1] < target else (lo, mid)
    (bpp0, p0), (bpp1, p1) = points[lo], points[hi]
    t = (target - p0) / (p1 - p0) if p1 > p0 else 1.0
    bpp = math.exp(math.log(bpp0) + t * (math.log(bpp1) - math.log(bpp0)))
    return JpegMatch(target, bpp, hi, bpp1, p1)


def compare_with_jpeg(archive: Path, source: Path, names: list[str]) -> list[str]:
    """One line per image ``names`` (entry names of ``archive``, files under ``source``): its bpp of
    record and PSNR in the archive, and JPEG's bpp at that PSNR."""
    from ..container.format import EntryKind
    from ..container.reader import ArchiveReader

    with ArchiveReader(Path(archive)) as reader:
        entries = {e.name: e for e in reader.entries if e.kind is EntryKind.IMAGE}
        missing = [n for n in names if n not in entries]
        if missing:
            raise InputError(f"{archive}: no image {missing[0]!r} in the archive")
        ours = {n: (len(reader.read_record(entries[n])) * 8 / entries[n].pixels, entries[n].psnr) for n in names}
    lines = []
    for name in names:
        bpp, db = ours[name]
        match = jpeg_at_psnr(load_rgb(Path(source) / name), db)
        line = f"{name}: archiver {bpp:.2f} bpp @ {db:.2f} dB"
        if match.bpp is None:
            lines.append(f"{line}; JPEG does not reach that PSNR (quality 95: {match.quality_bpp:.2f} bpp "
                         f"@ {match.quality_psnr:.2f} dB)")  # fmt: skip
            continue
        lines.append(f"{line}; JPEG needs {match.bpp:.2f} bpp at that PSNR (quality {match.quality}): "
                     f"the archiver's bytes are {bpp / match.bpp:.2f}× JPEG's")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archiver.bench.nearest", description=__doc__.split("\n")[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("source", type=Path, help="the folder that was packed")
    parser.add_argument("names", nargs="+", help="images to compare (names inside the archive)")
    args = parser.parse_args(argv)
    try:
        lines = compare_with_jpeg(args.archive, args.source, args.names)
    except (InputError, OSError) as exc:
        print(f"error: {exc}")
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
