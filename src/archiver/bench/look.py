"""``look.png`` of ``archiver bench``: the same crop of a few images from the archiver, AVIF and JPEG at equal bytes.

One row per image, four panes a row: the original, the archiver's decoded image, then AVIF's and
JPEG's at the setting whose encoded size is nearest the archiver's bytes for that image. Each pane
is a centred crop of :data:`CROP_PX` × :data:`CROP_PX` pixels (the whole side where the image is
smaller), enlarged :data:`ZOOM` times without smoothing so that artifacts show; over it a caption
names the codec and setting, with bpp and PSNR of the *whole* image (the bytes are per image;
PSNR capped at 60 dB).

Which images: the :data:`ROWS` largest by pixel count (ties: the earlier one in the folder's scan
order), shown in scan order (:func:`choose_images`). The archiver's bytes for an image
(:func:`archiver_image_bytes`): its latent coded alone, with its per-image extras, plus its pixel
share of every other byte of the archive (model, index, names, container). AVIF and JPEG are
searched by bisection over their quality range in :data:`archiver.bench.classic.CODECS` (sizes
grow with quality), and the nearer of the two bracketing settings wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .classic import CODECS, encode_decode, load_rgb
from .metrics import PSNR_CAP_DB, psnr

__all__ = [
    "CROP_PX", "ZOOM", "ROWS", "PANES", "LABEL_PX", "GAP_PX", "archiver_image_bytes", "choose_images", "look_at_pack",
    "write_look",
]

CROP_PX = 192  #: side of the crop, pixels of the image
ZOOM = 2  #: nearest-neighbour enlargement of each crop
ROWS = 3  #: images shown
PANES = ("original", "archiver", "avif", "jpeg")  #: panes of a row, left to right
LABEL_PX = 34  #: caption band over each pane, pixels (two lines of text)
GAP_PX = 6  #: space between panes and around the figure, pixels
_CELL_PX = CROP_PX * ZOOM  # pane side in look.png, pixels
_BACKGROUND, _TEXT, _EMPTY = (255, 255, 255), (0, 0, 0), (200, 200, 200)  # RGB


def choose_images(sizes: Sequence[tuple[int, int]], count: int = ROWS) -> list[int]:
    """Indices of the ``count`` largest of ``sizes`` ((width, height) in pixels), ties to the lower
    index, in increasing order."""
    ranked = sorted(range(len(sizes)), key=lambda i: (-sizes[i][0] * sizes[i][1], i))
    return sorted(ranked[:count])


def archiver_image_bytes(archive: Path, names: Sequence[str]) -> list[float]:
    """Bytes of the archive that go to each image named in ``names`` (paths inside the archive):
    its record as :meth:`~archiver.container.reader.ArchiveReader.read_record` gives it (the latent
    range-coded alone with the archive's tables, then its extras) plus its pixel share of what the
    image records do not hold (model, index, names, metadata, container). Raises
    :class:`InputError` for a name that is not an image of the archive."""
    from ..container.format import EntryKind
    from ..container.reader import ArchiveReader

    archive = Path(archive)
    with ArchiveReader(archive) as reader:
        images = {e.name: e for e in reader.entries if e.kind is EntryKind.IMAGE}
        missing = [n for n in names if n not in images]
        if missing:
            raise InputError(f"{archive}: no image {missing[0]!r} in the archive")
        if reader.blocks:  # version 3: the image groups' blocks hold every image's latent and extras
            coded = sum(b.length for b in reader.blocks if b.is_group)
        else:
            coded = sum(e.length for e in images.values())
        pixels = sum(e.pixels for e in images.values())
        rest = archive.stat().st_size - coded  # bytes no image record holds
        return [len(reader.read_record(images[n])) + rest * images[n].pixels / pixels for n in names]


def look_at_pack(
    path: Path, paths: Sequence[Path], decoded_dir: Path, archive: Path, label: str, names: Sequence[str] | None = None
) -> list[list[dict]]:
    """``look.png`` of one archiver point of ``archiver bench``: ``paths`` are the PNGs it packed
    into ``archive`` (entries named by their file names), ``decoded_dir`` holds extract's PNGs of
    them under the same names, ``names`` (default: the file names) are shown for them. Only the
    chosen images (:func:`choose_images`) are read; returns :func:`write_look`'s panes."""
    sizes = []
    for p in paths:
        with Image.open(p) as im:  # reads the header only
            sizes.append(im.size)
    chosen = choose_images(sizes)
    shown = [paths[i] for i in chosen]
    originals = [load_rgb(p) for p in shown]
    decoded = [load_rgb(Path(decoded_dir) / p.name) for p in shown]
    nbytes = archiver_image_bytes(archive, [p.name for p in shown])
    names = [names[i] if names is not None else paths[i].name for i in chosen]
    return write_look(path, originals, decoded, nbytes, archiver_label=label, names=names)


def _crop(rgb: np.ndarray) -> np.ndarray:
    """The centred CROP_PX × CROP_PX crop (or the whole side where smaller), enlarged ZOOM times."""
    h, w = rgb.shape[:2]
    ch, cw = min(CROP_PX, h), min(CROP_PX, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return rgb[y0 : y0 + ch, x0 : x0 + cw].repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def _nearest(original: np.ndarray, name: str, target: float) -> dict:
    """The pane of codec ``name`` at the setting whose size is nearest ``target`` bytes."""
    codec = CODECS[name]
    reason = codec.unavailable()
    if reason is not None:
        return {"codec": name, "setting": None, "error": f"not available: {reason}"}
    img = Image.fromarray(original, "RGB")  # a fresh image: no metadata is encoded
    sizes: dict[int, int] = {}  # setting -> encoded bytes

    def size(q: int) -> int:
        if q not in sizes:
            sizes[q] = len(encode_decode(img, codec, q)[0])
        return sizes[q]

    lo, hi = min(codec.settings), max(codec.settings)
    try:
        while hi - lo > 1:  # keep size(lo) < target <= size(hi), or the end of the range
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
        best = min((lo, hi), key=lambda q: (abs(size(q) - target), q))
        data, decoded, _, _ = encode_decode(img, codec, best)
    except (OSError, ValueError, KeyError) as exc:  # an encoder this Pillow cannot run
        return {"codec": name, "setting": None, "error": f"failed: {type(exc).__name__}: {exc}"}
    return {"codec": name, "setting": best, "bytes": len(data), "psnr": _psnr(original, decoded), "decoded": decoded}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB, capped at PSNR_CAP_DB like bench's means (an exact copy stays a number in JSON)."""
    return min(psnr(a, b), PSNR_CAP_DB)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType: the bitmap font
        return ImageFont.load_default()


def _caption(pane: dict, pixels: int) -> tuple[str, str]:
    """Two caption lines of a pane."""
    setting = "" if pane.get("setting") is None else f" q={pane['setting']}"
    if "error" in pane:
        return f"{pane['codec']}{setting}", pane["error"]
    if "bytes" not in pane:
        return pane["codec"], pane.get("note", "")
    return f"{pane['codec']}{setting}", f"{8 * pane['bytes'] / pixels:.3f} bpp, {pane['psnr']:.2f} dB"


def write_look(
    path: Path,
    originals: Sequence[np.ndarray],
    decoded: Sequence[np.ndarray],
    archiver_bytes: Sequence[float],
    *,
    archiver_label: str = "archiver",
    names: Sequence[str] | None = None,
) -> list[list[dict]]:
    """Write ``look.png`` at ``path``: one row per image of ``originals`` ((H, W, 3) uint8 RGB), with
    the archiver's ``decoded`` image of it and its ``archiver_bytes`` (bytes of the archive that go
    to it); panes as in the module docstring. ``archiver_label`` names the archiver's point in its
    caption (e.g. ``archiver q4``), ``names`` the images in the original's caption.

    Returns the panes of each row: dicts with ``codec``, ``setting``, ``bytes``, ``psnr`` (dB, whole
    image), or ``error`` where a codec could not run (its pane stays empty with the reason)."""
    if not (len(originals) == len(decoded) == len(archiver_bytes)) or not originals:
        raise InputError("write_look needs one decoded image and one byte count per original, and an original")
    names = list(names) if names is not None else [f"image {k + 1}" for k in range(len(originals))]
    rows = []
    for k, (orig, dec, nbytes) in enumerate(zip(originals, decoded, archiver_bytes)):
        if orig.shape != dec.shape or orig.ndim != 3 or orig.shape[2] != 3:
            raise InputError(f"{names[k]}: original {orig.shape} and decoded {dec.shape} must be the same (H, W, 3)")
        h, w = orig.shape[:2]
        rows.append([
            {"codec": "original", "note": f"{names[k]}, {w}x{h}", "decoded": orig},
            {"codec": archiver_label, "bytes": float(nbytes), "psnr": _psnr(orig, dec), "decoded": dec},
            *(_nearest(orig, name, nbytes) for name in PANES[2:]),
        ])  # fmt: skip
    _draw(path, originals, rows)
    return [[{k: v for k, v in pane.items() if k != "decoded"} for pane in row] for row in rows]


def _draw(path: Path, originals: Sequence[np.ndarray], rows: list[list[dict]]) -> None:
    """Lay out and save the panes (see the module docstring)."""
    width = len(PANES) * (_CELL_PX + GAP_PX) + GAP_PX
    height = len(rows) * (LABEL_PX + _CELL_PX + GAP_PX) + GAP_PX
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), _font(13)
    for r, (orig, row) in enumerate(zip(originals, rows)):
        top = GAP_PX + r * (LABEL_PX + _CELL_PX + GAP_PX)
        pixels = orig.shape[0] * orig.shape[1]
        for c, pane in enumerate(row):
            left = GAP_PX + c * (_CELL_PX + GAP_PX)
            for line, text in enumerate(_caption(pane, pixels)):
                draw.text((left, top + 1 + 16 * line), text[:60], fill=_TEXT, font=font)
            if "decoded" in pane:
                sheet.paste(Image.fromarray(_crop(pane["decoded"])), (left, top + LABEL_PX))
            else:
                draw.rectangle([left, top + LABEL_PX, left + _CELL_PX - 1, top + LABEL_PX + _CELL_PX - 1], fill=_EMPTY)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
