"""Rate–distortion sweep of classic image codecs through Pillow.

Codecs and their quality knob (``setting``), each swept down to its lowest value by default:

``jpeg``  Pillow JPEG (libjpeg-turbo): ``quality`` 1..95, ``optimize=True``, default 4:2:0 chroma.
``webp``  Pillow WebP (libwebp, lossy): ``quality`` 0..100, ``method=6`` (slowest, smallest).
``avif``  Pillow's built-in AVIF plugin (libavif; Pillow >= 11.2): ``quality`` 0..100, default
          ``speed=6`` and 4:2:0, ``max_threads=1``.
``jxl``   JPEG XL via ``pillow_jxl`` (pillow-jxl-plugin, registers format "JXL"): ``quality``
          0..99.x (libjxl quality -> distance; 100 is rejected unless ``lossless=True``),
          ``effort=7`` (libjxl default, 1..9), ``num_threads=1``.

Method: every image is loaded once as uint8 RGB and re-wrapped with ``Image.fromarray`` so no
metadata (ICC profile, EXIF, text) is written: rates are pixel payload plus container overhead.
Each image is encoded into a BytesIO, decoded with ``Image.open`` and compared in RGB. Encoders and
decoders (and torch for MS-SSIM) run single-threaded: timings are comparable and a shared
machine is not oversubscribed. Timings still depend on machine load.

Each aggregate point (one codec at one setting over all images) is a dict:
``codec, setting, n_images, bytes`` (sum of encoded sizes, bytes), ``pixels`` (sum of W*H),
``bpp`` (= 8 * bytes / pixels, bits per pixel), ``psnr`` (mean of per-image PSNR, dB),
``ms_ssim`` (mean of per-image MS-SSIM, None if disabled or undefined), ``encode_s`` and
``decode_s`` (wall seconds summed over images).

``sweep`` returns ``{"points": [...], "skipped": {codec: reason}, "errors": [{codec, setting,
error}]}``: a codec whose plugin is missing is skipped with its reason, a setting that fails to
encode is recorded in ``errors`` and the sweep goes on.

Command line: ``python -m archiver.bench.classic IMG_DIR [--max-images N] [--codecs jpeg,webp]
[--no-msssim] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, features

from .metrics import mean_psnr
from .metrics import ms_ssim as _ms_ssim
from .metrics import psnr as _psnr

__all__ = ["CODECS", "Codec", "encode_decode", "load_rgb", "main", "sweep"]


def _pillow_feature(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            return None if features.check(name) else f"Pillow {Image.__version__} built without {name} support"
        except Exception as exc:  # unknown feature name in an old Pillow
            return f"Pillow {Image.__version__} has no {name} support ({exc})"

    return check


def _jxl_available() -> str | None:
    try:
        import pillow_jxl  # noqa: F401  (registers the "JXL" format with Pillow)
    except ImportError as exc:
        return f"pillow-jxl-plugin not installed ({exc})"
    return None if "JXL" in Image.SAVE else "pillow_jxl imported but did not register a JXL encoder"


@dataclass(frozen=True)
class Codec:
    """A Pillow codec: ``format`` name, default settings and ``save_kwargs(setting)`` options."""

    name: str
    format: str
    settings: tuple[int, ...]
    save_kwargs: Callable[[int], dict]
    unavailable: Callable[[], str | None] = field(default=lambda: None)  # reason, or None if usable


CODECS: dict[str, Codec] = {
    "jpeg": Codec(
        "jpeg", "JPEG", (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda q: {"quality": int(q), "optimize": True}, _pillow_feature("jpg"),
    ),
    "webp": Codec(
        "webp", "WEBP", (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
        lambda q: {"quality": int(q), "method": 6}, _pillow_feature("webp"),
    ),
    "avif": Codec(
        "avif", "AVIF", (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
        lambda q: {"quality": int(q), "max_threads": 1}, _pillow_feature("avif"),
    ),
    "jxl": Codec(
        "jxl", "JXL", (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99),
        lambda q: {"quality": float(q), "effort": 7, "num_threads": 1}, _jxl_available,
    ),
}


@contextlib.contextmanager
def _single_threaded():
    """Single-threaded AVIF/JXL decoders and torch (MS-SSIM) for the sweep, restored on exit."""
    saved = []
    try:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # avoids oversubscribing a shared 2-core machine
    except ImportError:
        torch = None
    try:
        from PIL import AvifImagePlugin

        saved.append((AvifImagePlugin, "DEFAULT_MAX_THREADS", AvifImagePlugin.DEFAULT_MAX_THREADS))
        AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    except (ImportError, AttributeError):
        pass
    try:
        from pillow_jxl import JpegXLImagePlugin

        saved.append((JpegXLImagePlugin, "DECODE_THREADS", JpegXLImagePlugin.DECODE_THREADS))
        JpegXLImagePlugin.DECODE_THREADS = 0  # 0 disables parallelism
    except (ImportError, AttributeError):
        pass
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
        if torch is not None:
            torch.set_num_threads(torch_threads)


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an image file (converted to RGB, no colour management)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def encode_decode(img: Image.Image, codec: Codec, setting: int) -> tuple[bytes, np.ndarray, float, float]:
    """Encode ``img`` in memory, decode it; returns (data, decoded RGB uint8, encode s, decode s)."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    img.save(buf, format=codec.format, **codec.save_kwargs(setting))
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        dec.load()
        t2 = time.perf_counter()
        out = np.asarray(dec.convert("RGB"))
    return data, out, t1 - t0, t2 - t1


def _mean(values: Iterable[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


def sweep(
    paths: Sequence[str | Path],
    codecs: Sequence[str] | None = None,
    settings: dict[str, Sequence[int]] | None = None,
    with_msssim: bool = True,
    max_images: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Sweep classic codecs over ``paths``; returns ``{"points", "skipped", "errors"}`` (see module doc).

    ``codecs``: names from CODECS (default all, in CODECS order). ``settings``: per-codec list of
    quality values overriding the defaults. ``max_images``: use only the first N paths.
    """
    names = list(CODECS) if codecs is None else [c.lower() for c in codecs]
    unknown = [c for c in names if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {sorted(CODECS)}")
    settings = {k.lower(): v for k, v in (settings or {}).items()}
    paths = list(paths)[: max_images if max_images is not None else None]
    if not paths:
        raise ValueError("no images to sweep")
    arrays = [load_rgb(p) for p in paths]
    images = [Image.fromarray(a, "RGB") for a in arrays]  # fresh images: no metadata is encoded
    pixels = sum(a.shape[0] * a.shape[1] for a in arrays)  # pixels over all images

    result: dict = {"points": [], "skipped": {}, "errors": []}
    with _single_threaded():
        for name in names:
            codec = CODECS[name]
            reason = codec.unavailable()
            if reason is not None:
                result["skipped"][name] = reason
                continue
            for setting in settings.get(name, codec.settings):
                total_bytes, enc_s, dec_s, psnrs, msssims = 0, 0.0, 0.0, [], []
                try:
                    for arr, img in zip(arrays, images):
                        data, out, te, td = encode_decode(img, codec, setting)
                        total_bytes += len(data)  # bytes
                        enc_s += te
                        dec_s += td
                        psnrs.append(_psnr(arr, out))
                        if with_msssim:
                            msssims.append(_ms_ssim(arr, out))
                except Exception as exc:  # one bad setting must not kill the sweep
                    result["errors"].append({"codec": name, "setting": setting, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                point = {
                    "codec": name,
                    "setting": setting,
                    "n_images": len(arrays),
                    "bytes": total_bytes,
                    "pixels": pixels,
                    "bpp": 8.0 * total_bytes / pixels,  # bits per pixel
                    "psnr": mean_psnr(psnrs),
                    "ms_ssim": _mean(msssims) if with_msssim else None,
                    "encode_s": enc_s,
                    "decode_s": dec_s,
                }
                result["points"].append(point)
                if progress is not None:
                    progress(f"{name:5s} q={setting:<4} bpp={point['bpp']:.4f} psnr={point['psnr']:.2f}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rate–distortion sweep of classic codecs (Pillow).")
    ap.add_argument("img_dir", type=Path, help="folder of images (*.png, sorted by name)")
    ap.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset of " + ",".join(CODECS))
    ap.add_argument("--no-msssim", action="store_true", help="skip MS-SSIM (faster)")
    ap.add_argument("--out", type=Path, default=None, help="write JSON here (default: stdout)")
    args = ap.parse_args(argv)
    paths = sorted(args.img_dir.glob("*.png"))
    res = sweep(
        paths,
        codecs=[c for c in args.codecs.split(",") if c],
        with_msssim=not args.no_msssim,
        max_images=args.max_images,
        progress=lambda s: print(s, flush=True) if args.out else None,
    )
    res["images"] = [str(p) for p in paths[: args.max_images]]
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
