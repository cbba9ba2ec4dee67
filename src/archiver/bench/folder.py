"""``archiver bench SRC``: the archiver against JPEG, WebP, AVIF and JPEG XL on a user's own images.

Every file under SRC that ``pack`` would code as an image is loaded once (the same loader and policy
as pack) and written as a metadata-free RGB PNG into a scratch folder, so that the archiver and the
classic codecs see exactly the same pixels and neither pays for metadata. The classic codecs are
swept per file through Pillow; the archiver packs the whole set at each ``--quality`` (the whole
``.nca`` file counts, model included). The report (JSON, markdown, RD plot) goes to the output folder,
with ``look.png``: the same crop of three of the images from the archiver (one of its points, see
:func:`look_point`), AVIF and JPEG at equal bytes per image (:mod:`archiver.bench.look`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from PIL import Image

from .. import __version__
from ..codecs import DEFAULT_CODEC
from ..collection.images import SourceImage, load_image
from ..collection.scan import scan_tree
from ..container.format import EntryKind
from ..errors import InputError, MissingDependencyError
from ..progress import ProgressCallback, emit

__all__ = ["bench_folder", "REPORT_STEM", "LOOK_FILE", "look_point"]

#: Report files written to the output folder: ``bench.json``, ``bench.md``, ``bench.png``.
REPORT_STEM = "bench"
#: The crops written next to them (:mod:`archiver.bench.look`).
LOOK_FILE = "look.png"
#: pack's default ``--quality`` (:func:`archiver.config.config_for_quality`).
_DEFAULT_QUALITY = 4


def _check_extra() -> None:
    """Fail before any work when a dependency is missing (the sweep alone can take many minutes)."""
    needs = {"torch": "train", "matplotlib": "bench", "pytorch_msssim": "bench", "scipy": "bench"}
    for module, extra in needs.items():
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(
                f"archiver bench needs {module}: install the {extra} extra (pip install 'archiver[{extra}]')"
            ) from None


def collect_images(source: Path, folder: Path, limit: int | None = None, names: list[str] | None = None) -> list[Path]:
    """Write every image pack would code under ``source`` as ``folder/NNNNNN.png`` (RGB, no metadata);
    with ``names``, append each one's path under ``source`` to it (in the same order)."""
    folder.mkdir(parents=True)
    paths: list[Path] = []
    for item in scan_tree(source):
        if item.kind is not EntryKind.FILE:
            continue
        try:
            image, _ = load_image(item.path)
        except OSError as exc:
            raise InputError(f"{item.path}: cannot read ({exc.strerror or exc})") from None
        if not isinstance(image, SourceImage):
            continue
        out = folder / f"{len(paths):06d}.png"
        Image.fromarray(image.rgb).save(out)
        paths.append(out)
        if names is not None:
            names.append(os.fsdecode(item.rel))
        if limit is not None and len(paths) >= limit:
            break
    if not paths:
        raise InputError(f"{source}: no images that pack would code")
    return paths


def look_point(qualities: tuple[int, ...], target_psnrs: tuple[float, ...] = ()) -> int:
    """Index of the archiver point ``look.png`` shows: the ``--quality`` nearest pack's default (4;
    ties: the lower), or with ``target_psnrs`` the middle one by value (the higher of two middles)."""
    if target_psnrs:
        return sorted(range(len(target_psnrs)), key=lambda i: target_psnrs[i])[len(target_psnrs) // 2]
    return min(range(len(qualities)), key=lambda i: (abs(qualities[i] - _DEFAULT_QUALITY), qualities[i]))


def bench_folder(
    source: Path,
    out_dir: Path,
    *,
    qualities: tuple[int, ...] = (2, 4, 6),
    time_limit: float = 480.0,
    seed: int = 0,
    codecs: list[str] | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
    codec: str = DEFAULT_CODEC,
    target_psnrs: tuple[float, ...] = (),
) -> dict:
    """Compare the archiver with the classic codecs on the images under ``source``; write
    ``bench.{json,md,png}`` and ``look.png`` into ``out_dir`` and return the result (points, BD-rates,
    and under ``look`` the archiver point and the panes of look.png). The
    archiver's points: one pack per ``--quality`` level, or with ``target_psnrs`` (a codec with
    per-image rates) one pack per ``--target-psnr`` instead."""
    from ..config import QUALITY_LEVELS, config_for_quality

    bad = [q for q in qualities if q not in QUALITY_LEVELS]
    if (bad or not qualities) and not target_psnrs:
        raise InputError(f"--qualities must be levels from 1 to 8, got {','.join(map(str, qualities)) or 'none'}")
    configs = (
        [(f"t{t:g}", config_for_quality(None, codec=codec, target_psnr=t, time_limit=time_limit, seed=seed)) for t in target_psnrs]
        if target_psnrs
        else [(f"q{q}", config_for_quality(q, codec=codec, time_limit=time_limit, seed=seed)) for q in qualities]
    )  # fmt: skip
    if time_limit <= 0:
        raise InputError(f"--time-limit must be positive, got {time_limit} s")
    _check_extra()
    from .classic import CODECS, sweep

    unknown = [c for c in codecs or [] if c not in CODECS]
    if unknown:
        raise InputError(f"--codecs: unknown codec {unknown[0]!r} (known: {', '.join(CODECS)})")
    from .compare import archiver_point, bd_table, machine, markdown, plot
    from .look import look_at_pack

    source, out_dir = Path(source), Path(out_dir)
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="archiver-bench-") as tmp:
        images = Path(tmp) / "images"
        names: list[str] = []  # each image's path under source
        paths = collect_images(source, images, limit, names)
        emit(progress, "classic", 0, 1)
        classic = sweep(paths, codecs=codecs)
        emit(progress, "classic", 1, 1)
        points = list(classic["points"])
        for n, (name, cfg) in enumerate(configs):
            emit(progress, "archiver", n, len(configs))
            points.append(archiver_point(paths, images, Path(tmp), cfg.quality, time_limit, seed, cfg, name, progress))
        emit(progress, "archiver", len(configs), len(configs))
        shown = points[len(points) - len(configs) + look_point(qualities, target_psnrs)]
        label = f"archiver q{shown['setting']}" if isinstance(shown["setting"], int) else f"archiver {shown['setting']}"
        archive = Path(shown["archive"])  # archiver_point extracted it into <stem>-out next to it
        out_dir.mkdir(parents=True, exist_ok=True)
        emit(progress, "look", 0, 1)
        look = look_at_pack(out_dir / LOOK_FILE, paths, archive.with_name(f"{archive.stem}-out"), archive, label, names)
        emit(progress, "look", 1, 1)
    result = {
        "title": f"folder `{source.name}`", "regime": "folder", "source": str(source), "seed": seed,
        "command": f"archiver bench {source} -o {out_dir} --codec {codec} "
                   + (f"--target-psnr {','.join(f'{t:g}' for t in target_psnrs)} " if target_psnrs
                      else f"--qualities {','.join(map(str, qualities))} ")
                   + f"--time-limit {time_limit:.0f}",
        "date": started.isoformat(timespec="seconds"), "commit": f"archiver {__version__}", "machine": machine(),
        "n_images": len(paths), "pixels": points[-1]["pixels"], "points": points,
        "skipped": classic["skipped"], "errors": classic["errors"], "look": {"point": label, "rows": look},
    }  # fmt: skip
    for p in points:
        p.pop("archive", None)  # a scratch path that no longer exists
    result["bd_rate"] = bd_table(points)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{REPORT_STEM}.json").write_text(json.dumps(result, indent=1, default=float))
    (out_dir / f"{REPORT_STEM}.md").write_text(markdown(result))
    plot(result, out_dir / f"{REPORT_STEM}.png")
    return result
