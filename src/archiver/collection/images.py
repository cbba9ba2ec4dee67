"""Reading images into the codec's RGB representation with everything needed to write them back.

Policy (what is coded, what is kept byte-exact) lives in :func:`load_image`: an image is coded only if
its pixels are 8-bit RGB, grayscale, RGBA/LA or palette without transparency, it has one frame, and its
format can be written back by Pillow. Anything else is stored as is, with the reason.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from ..container.format import IMAGE_FORMATS, ImageMode
from ..errors import InputError
from ..metrics import psnr

__all__ = [
    "SourceImage",
    "load_image",
    "restore_image",
    "save_image",
    "quality_psnr",
    "pixel_crc32",
    "measure_decoded",
    "JPEG_QUALITY",
    "LOSSLESS_FORMATS",
    "MAX_CODED_PIXELS",
    "NOT_AN_IMAGE",
]

ImageFile.LOAD_TRUNCATED_IMAGES = False

#: The reason given for files Pillow does not recognise as images at all (not a fallback).
NOT_AN_IMAGE = "not an image"
#: Images with more pixels than this are stored byte-exact rather than coded (decoded size in RAM:
#: 3 bytes a pixel, ×16 float activations in the network).
MAX_CODED_PIXELS = 100_000_000

#: Quality (Pillow scale) used when an extracted image is written back as JPEG, or AVIF.
JPEG_QUALITY = 95
#: Formats written back losslessly on extract (the decoded pixels reach the file unchanged).
LOSSLESS_FORMATS = ("PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "TGA")

_MODES = {"RGB": ImageMode.RGB, "L": ImageMode.L, "RGBA": ImageMode.RGBA, "LA": ImageMode.LA, "P": ImageMode.P}
_TIFF_LOSSLESS = ("raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits")


@dataclass
class SourceImage:
    """An image ready for the codec.

    Attributes:
        rgb: (H, W, 3) uint8, what the network codes (gray and palette images are expanded to RGB);
            None once released (large collections keep only a budget of pixels in memory).
        mode: the mode it is extracted in.
        format: Pillow format name of the original file.
        info: JSON-able settings to write it back with (dpi, PNG text, TIFF compression).
        blobs: byte payloads kept losslessly (``alpha`` plane, ``exif``, ``icc``, ``xmp``, ``palette``).
        reference: (H, W) or (H, W, 3) uint8, the colour channels :func:`quality_psnr` compares against.
        path: the file it was read from.
        shape: (height, width) in pixels, kept when released.
        checksum: CRC-32 of ``rgb``, kept when released (to notice a file changed during pack).
    """

    rgb: np.ndarray | None
    mode: ImageMode
    format: str
    info: dict = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    reference: np.ndarray | None = None
    path: Path | None = None
    shape: tuple[int, int] = (0, 0)
    checksum: int = 0

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0]) if self.rgb is not None else self.shape[0]

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1]) if self.rgb is not None else self.shape[1]

    @property
    def resident(self) -> bool:
        """Whether the pixels are in memory (else :meth:`full` reads the file again)."""
        return self.rgb is not None

    def release(self) -> "SourceImage":
        """This image without its pixels and blobs in memory: its size and a CRC-32 of its pixels
        stay, so that :meth:`full` can read it again and check that the file has not changed."""
        if self.rgb is None:
            return self
        return replace(
            self, rgb=None, reference=None, blobs={}, shape=(self.height, self.width),
            checksum=zlib.crc32(self.rgb.tobytes()),
        )  # fmt: skip

    def full(self) -> "SourceImage":
        """The image with its pixels: itself if resident, else read again from ``path``."""
        if self.rgb is not None:
            return self
        try:
            image, _ = load_image(self.path)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        if image is None or (image.height, image.width) != self.shape or zlib.crc32(image.rgb.tobytes()) != self.checksum:
            raise InputError(f"{self.path}: changed while being packed; pack it again")
        return image


def _metadata(im: Image.Image) -> tuple[dict, dict[str, bytes]]:
    info: dict = {}
    blobs: dict[str, bytes] = {}
    for key, name in (("exif", "exif"), ("icc_profile", "icc")):
        value = im.info.get(key)
        if isinstance(value, (bytes, bytearray)) and value:
            blobs[name] = bytes(value)
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if xmp:
        blobs["xmp"] = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    if "dpi" in im.info:
        info["dpi"] = [float(v) for v in im.info["dpi"]]
    if im.format == "PNG":
        text = {k: v for k, v in getattr(im, "text", {}).items() if k != "XML:com.adobe.xmp" and isinstance(v, str)}
        if text:
            info["text"] = text
    if im.format == "TIFF":
        info["compression"] = im.info.get("compression", "raw")
    return info, blobs


def load_image(path: Path) -> tuple[SourceImage | None, str]:
    """Open ``path``; return ``(SourceImage, "")`` if it is coded, else ``(None, reason it is kept as is)``.

    Raises OSError (e.g. permission denied) from opening the file itself; failures of the image
    decoder are a reason to keep the file byte-exact, not an error.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format or ""
        if im.width * im.height > MAX_CODED_PIXELS:
            return None, f"{im.width}x{im.height} is over {MAX_CODED_PIXELS // 1_000_000} megapixels"
        if getattr(im, "n_frames", 1) > 1:
            return None, f"{fmt} with {im.n_frames} frames (animation or multi-page)"
        if fmt not in IMAGE_FORMATS or not fmt:
            return None, f"{fmt or 'unknown'} format is not written back by the codec"
        if im.mode not in _MODES:
            return None, f"mode {im.mode} (not 8-bit RGB/gray/palette/alpha)"
        if im.mode == "P" and ("transparency" in im.info or im.palette.mode != "RGB"):
            return None, "palette image with transparency"
        if fmt == "TIFF" and im.info.get("compression", "raw") not in _TIFF_LOSSLESS:
            return None, f"TIFF with {im.info.get('compression')} compression"
        im.load()
    except UnidentifiedImageError:
        return None, NOT_AN_IMAGE
    except Image.DecompressionBombError as exc:
        return None, f"too many pixels ({exc})"
    except Exception as exc:  # Pillow raises many types for damaged files
        return None, f"not decodable as an image ({type(exc).__name__}: {exc})"
    info, blobs = _metadata(im)
    mode = _MODES[im.mode]
    if mode in (ImageMode.RGBA, ImageMode.LA):
        blobs["alpha"] = np.asarray(im.getchannel("A"), dtype=np.uint8).tobytes()
    if mode is ImageMode.P:
        blobs["palette"] = bytes(im.getpalette("RGB") or [])
    gray = mode in (ImageMode.L, ImageMode.LA)
    reference = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    rgb = np.repeat(reference[:, :, None], 3, axis=2) if gray else reference
    return SourceImage(np.ascontiguousarray(rgb), mode, fmt, info, blobs, reference, path=Path(path)), ""


def restore_image(rgb: np.ndarray, mode: ImageMode, blobs: dict[str, bytes]) -> Image.Image:
    """Turn the decoded (H, W, 3) uint8 pixels back into an image of the original ``mode``."""
    h, w = rgb.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if mode is ImageMode.RGB:
        return im
    if mode in (ImageMode.L, ImageMode.LA):
        im = im.convert("L")
    if mode in (ImageMode.RGBA, ImageMode.LA):
        alpha = np.frombuffer(blobs["alpha"], dtype=np.uint8)
        if alpha.size != h * w:
            raise ValueError(f"alpha plane has {alpha.size} values for a {w}x{h} image")
        im.putalpha(Image.fromarray(alpha.reshape(h, w), "L"))
    if mode is ImageMode.P:
        im = Image.fromarray(_nearest_palette_index(rgb, blobs["palette"]), "P")
        im.putpalette(blobs["palette"])
    return im


def _nearest_palette_index(rgb: np.ndarray, palette: bytes) -> np.ndarray:
    """(H, W) uint8 index of the nearest palette colour (squared RGB distance, first on ties).

    Pillow's own quantize(palette=...) works on a reduced-precision colour cache and can miss an
    exact match; this is exact, in blocks of 64 Ki pixels to bound memory (64 Ki × 256 int32).
    """
    colors = np.frombuffer(palette, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    out = np.empty(flat.shape[0], dtype=np.uint8)
    for start in range(0, flat.shape[0], 1 << 16):
        block = flat[start : start + (1 << 16)]
        dist = ((block[:, None, :] - colors[None, :, :]) ** 2).sum(axis=2)
        out[start : start + len(block)] = np.argmin(dist, axis=1)
    return out.reshape(rgb.shape[:2])


def quality_psnr(restored: Image.Image, source: SourceImage) -> float:
    """PSNR (dB) of the restored image's colour channels against the original's (alpha is lossless)."""
    gray = source.mode in (ImageMode.L, ImageMode.LA)
    return psnr(np.asarray(restored.convert("L" if gray else "RGB")), source.reference)


def measure_decoded(pixels: np.ndarray, source: SourceImage) -> tuple[float, int]:
    """(PSNR in dB, pixel CRC-32) of decoded (H, W, 3) pixels restored to ``source``'s mode: what
    an archive stores per image and ``verify --decode`` checks."""
    restored = restore_image(pixels, source.mode, source.blobs)
    return quality_psnr(restored, source), pixel_crc32(restored)


def pixel_crc32(im: Image.Image) -> int:
    """CRC-32 of a restored image's mode, size and pixel bytes: what verify --decode compares."""
    header = f"{im.mode} {im.width}x{im.height}".encode()
    return zlib.crc32(im.tobytes(), zlib.crc32(header))


#: zlib level and strategy of restored PNGs (Pillow's default: level 6, the default strategy).
#: Run-length matching (``Z_RLE``) on PNG's filtered rows suits decoded photos, which repeat short
#: runs and rarely long strings. Measured on 24 restored album photos (0.37 Mpx each) and 24 crops
#: of 256² (one core, best of 2): level 6 4.4 / 4.0 Mpx/s, level 3 9.1 / 8.0 Mpx/s with files 3.1 /
#: 2.3 % larger than level 6's, level 3 with ``Z_RLE`` 14.7 / 12.6 Mpx/s and 0.7 / 1.0 % larger
#: (with ``Z_RLE`` the level changes nothing). At level 6 writing a restored album took more CPU
#: than its synthesis.
PNG_COMPRESS_LEVEL = 3
PNG_STRATEGY = zlib.Z_RLE


def save_image(im: Image.Image, target, fmt: str, info: dict, blobs: dict[str, bytes]) -> None:
    """Write ``im`` as ``fmt`` with its metadata; lossless where the format allows, else quality 95."""
    kwargs: dict = {}
    if "icc" in blobs:
        kwargs["icc_profile"] = blobs["icc"]
    if "exif" in blobs and fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF"):
        kwargs["exif"] = blobs["exif"]
    if "dpi" in info and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = tuple(info["dpi"])
    if fmt == "PNG":
        pnginfo = PngImagePlugin.PngInfo()
        for key, value in info.get("text", {}).items():
            pnginfo.add_itxt(key, value)
        if "xmp" in blobs:
            pnginfo.add_itxt("XML:com.adobe.xmp", blobs["xmp"].decode("utf-8", "replace"))
        kwargs["pnginfo"] = pnginfo
        kwargs["compress_level"], kwargs["compress_type"] = PNG_COMPRESS_LEVEL, PNG_STRATEGY
    elif fmt in ("JPEG", "WEBP", "AVIF") and "xmp" in blobs:
        kwargs["xmp"] = blobs["xmp"]
    if fmt == "JPEG":
        kwargs.update(quality=JPEG_QUALITY, subsampling=0, optimize=True)
    elif fmt == "AVIF":
        kwargs.update(quality=JPEG_QUALITY)
    elif fmt == "WEBP":
        kwargs.update(lossless=True, quality=100, method=4)
    elif fmt == "TIFF":
        kwargs["compression"] = info.get("compression", "tiff_lzw")
    im.save(target, format=fmt, **kwargs)
