"""Reproducible benchmark image sets ("regimes") built from a folder of PNG photos.

The source folder defaults to ``<repo>/../shared/data/dev`` (183 RGB PNGs, long side <= 768 px).
Sources are the ``*.png`` files of ``src_dir`` (not recursive) sorted by file name, so a recipe
depends only on the folder contents, the seed and the recipe name. Every recipe draws from its own
random stream ``numpy.random.default_rng(SeedSequence([seed, crc32(name)]))``: with the same seed,
"dataset" and "tiny" do not share crops.

Recipes (all outputs are RGB PNGs named ``<name>_<index>...png`` in ``out_dir``):

``dataset``  -- 400 random 128x128 crops. The photos are shuffled once (seeded) and visited
               round-robin (crop i comes from photo ``order[i % n_photos]``); the crop's top-left
               corner is drawn uniformly (seeded) among the positions that fit. Photos whose short
               side is below 128 px are not used.
``album``    -- 48 full photos chosen without replacement (seeded), pixels unchanged, re-saved as PNG
               without metadata (ICC profiles dropped, as for every recipe: the classic codecs are
               measured on pixels only). Fewer if the folder holds fewer than 48 photos.
``tiny``     -- 2000 32x32 thumbnails: random 128x128 crops chosen exactly as in ``dataset`` (but
               from the ``tiny`` random stream), each downscaled to 32x32 with Pillow LANCZOS.

``split`` picks which photos of ``src_dir`` a recipe may use: ``all`` (default), or one half fixed
by file name -- ``train`` (``crc32(name) % 2 == 0``: the photos the shipped warm-start weights were
trained on, see ``scripts/pretrain.py``) or ``heldout`` (the others: benchmarks of warm-started packs
use only these, so no benchmark image was seen in pretraining).

``limit`` truncates the recipe's sequence: ``limit=k`` gives exactly the first k images of the full
recipe, so small test runs are prefixes of the real sets. Before writing, stale ``<name>_*.png``
files in ``out_dir`` are removed; other files are left alone.

Command line: ``python -m benchmarks.regimes NAME OUT_DIR [--src DIR] [--seed 0] [--limit N] [--split S]``.
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DEFAULT_SRC_DIR", "REGIMES", "SPLITS", "Regime", "build_regime", "list_sources", "split_of"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC_DIR = REPO_ROOT.parent / "shared" / "data" / "dev"


@dataclass(frozen=True)
class Regime:
    """One recipe: ``count`` images; crops of ``crop`` px resized to ``size`` px (None = full photo)."""

    name: str
    count: int
    crop: int | None  # side of the square crop in source pixels; None = whole photo
    size: int | None  # output side in pixels after LANCZOS resize; None = keep crop size


REGIMES: dict[str, Regime] = {
    "dataset": Regime("dataset", 400, 128, None),
    "album": Regime("album", 48, None, None),
    "tiny": Regime("tiny", 2000, 128, 32),
}


#: Names of the photo subsets a recipe can draw from (see the module docstring).
SPLITS = ("all", "train", "heldout")


def split_of(path: Path) -> str:
    """``train`` or ``heldout``: the half a source photo belongs to, from its file name alone."""
    return "train" if zlib.crc32(path.name.encode()) % 2 == 0 else "heldout"


def list_sources(src_dir: str | Path, split: str = "all") -> list[Path]:
    """Sorted ``*.png`` files of ``src_dir`` in ``split``; raises FileNotFoundError / ValueError if there are none."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    src = Path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder for benchmark regimes does not exist: {src}")
    paths = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    paths = [p for p in paths if split == "all" or split_of(p) == split]
    if not paths:
        raise ValueError(f"no PNG photos in {src}: a regime needs at least one *.png source image")
    return paths


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def _load_rgb(path: Path) -> Image.Image:
    """The photo's pixels only: a fresh image, so no ICC profile or other metadata is carried over.

    The classic codecs are swept on pixels only, and the archiver keeps every profile it finds (it
    is an archiver): metadata in the regime's files would be charged to the archiver alone
    (measured: 9 KB ICC profiles in a tenth of the crops were 80 % of a tiny-regime archive).
    """
    with Image.open(path) as im:
        return Image.fromarray(np.asarray(im.convert("RGB")))


def _crops(regime: Regime, sources: list[Path], rng: np.random.Generator, n: int):
    """Yield (index, PIL RGB crop) for the first n crops of the recipe (grouped by source, not in index order)."""
    side = regime.crop
    assert side is not None
    sizes = {}
    for p in sources:
        with Image.open(p) as im:
            sizes[p] = im.size  # (width, height) in pixels, header only
    usable = [p for p in sources if min(sizes[p]) >= side]
    if not usable:
        raise ValueError(f"no source photo is at least {side}x{side} px, cannot cut '{regime.name}' crops")
    order = [usable[i] for i in rng.permutation(len(usable))]
    plan = []  # (index, source, left px, top px), drawn in recipe order so prefixes are stable
    for i in range(n):
        src = order[i % len(order)]
        w, h = sizes[src]
        x = int(rng.integers(0, w - side + 1))
        y = int(rng.integers(0, h - side + 1))
        plan.append((i, src, x, y))
    by_source: dict[Path, list[tuple[int, int, int]]] = {}
    for i, src, x, y in plan:
        by_source.setdefault(src, []).append((i, x, y))
    for src, items in by_source.items():  # decode each photo once
        photo = _load_rgb(src)
        for i, x, y in items:
            crop = photo.crop((x, y, x + side, y + side))
            if regime.size is not None and regime.size != side:
                crop = crop.resize((regime.size, regime.size), Image.Resampling.LANCZOS)
            yield i, crop


def build_regime(
    name: str,
    src_dir: str | Path | None,
    out_dir: str | Path,
    seed: int = 0,
    limit: int | None = None,
    split: str = "all",
) -> list[Path]:
    """Write the images of recipe ``name`` into ``out_dir`` and return their paths in recipe order.

    ``src_dir=None`` means DEFAULT_SRC_DIR. ``limit`` caps the number of images (the first ``limit``
    of the full recipe); ``split`` restricts the source photos (see :data:`SPLITS`).
    Raises KeyError for an unknown recipe and ValueError if ``src_dir`` holds no PNG.
    """
    if name not in REGIMES:
        raise KeyError(f"unknown regime {name!r}; choose one of {sorted(REGIMES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    regime = REGIMES[name]
    sources = list_sources(DEFAULT_SRC_DIR if src_dir is None else src_dir, split)
    rng = _rng(seed, name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{name}_*.png"):
        stale.unlink()

    written: list[Path] = []
    if regime.crop is None:  # whole photos, pixels unchanged, metadata dropped (see _load_rgb)
        n = min(regime.count, len(sources))
        chosen = rng.choice(len(sources), size=n, replace=False)
        if limit is not None:
            chosen = chosen[:limit]
        for i, k in enumerate(chosen):
            src = sources[int(k)]
            dst = out / f"{name}_{i:03d}_{src.name}"
            _load_rgb(src).save(dst, format="PNG")
            written.append(dst)
        return written

    n = regime.count if limit is None else min(regime.count, limit)
    width = len(str(regime.count - 1))
    written = [out / f"{name}_{i:0{width}d}.png" for i in range(n)]
    for i, img in _crops(regime, sources, rng, n):
        img.save(written[i], format="PNG")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build a reproducible benchmark image set.")
    ap.add_argument("name", choices=sorted(REGIMES))
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR, help="folder of source PNG photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="write only the first N images")
    ap.add_argument("--split", choices=SPLITS, default="all", help="which half of the source photos to use")
    args = ap.parse_args(argv)
    paths = build_regime(args.name, args.src, args.out_dir, seed=args.seed, limit=args.limit, split=args.split)
    print(f"wrote {len(paths)} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
