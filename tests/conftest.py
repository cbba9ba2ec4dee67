"""Shared helpers: small synthetic images from a seeded RNG and a mixed test tree."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


def smooth_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: gradients, a few discs and mild noise — photo-like enough to code, cheap to learn."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        a, b, d = rng.uniform(-1, 1, 3)
        out[..., c] = 128 + 60 * (a * xx / width + b * yy / height) + 30 * np.sin(d * 6 * xx / width + c)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, max(5, width / 3))
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        out[mask] = rng.uniform(0, 255, 3)
    out += rng.normal(0, 2, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, width: int, height: int, seed: int = 0) -> Path:
    """``count`` seeded :func:`smooth_image` PNGs named 0.png, 1.png, … in a new ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(smooth_image(rng, width, height)).save(folder / f"{i}.png")
    return folder


def make_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ArchiverTestCam"  # Make
    exif[0x0112] = 1  # Orientation
    return exif.tobytes()


def make_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def build_mixed_tree(root: Path, seed: int = 0) -> dict[str, str]:
    """The tree the end-to-end tests pack: returns {relative name: what it is}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    Image.fromarray(smooth_image(rng, 61, 47)).save(root / "odd_rgb.png")
    Image.fromarray(smooth_image(rng, 48, 40)[..., 0]).save(root / "sub" / "gray.png")
    rgba = np.dstack([smooth_image(rng, 40, 33), rng.integers(0, 256, (33, 40), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "alpha.png")
    Image.fromarray(smooth_image(rng, 50, 36)).quantize(16).save(root / "palette.png")
    Image.fromarray((rng.integers(0, 65535, (20, 24))).astype(np.uint16)).save(root / "sixteen.png")
    Image.fromarray(smooth_image(rng, 64, 48)).save(
        root / "sub" / "deeper" / "photo.jpg", quality=92, exif=make_exif(), icc_profile=make_icc()
    )
    (root / "notes.txt").write_bytes(b"not an image\n\x00\xff binary tail")
    os.utime(root / "notes.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return {
        "odd_rgb.png": "RGB", "sub/gray.png": "L", "sub/alpha.png": "RGBA", "palette.png": "P",
        "sixteen.png": "raw", "sub/deeper/photo.jpg": "RGB", "notes.txt": "raw",
    }  # fmt: skip


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_rgb(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth gradients plus a disc and mild noise (compressible, photo-like)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, f = rng.uniform(-1, 1, 3)
        out[..., c] = 128 + 60 * (a * xx / width + b * yy / height) + 30 * np.sin(6 * f * xx / width + c)
    cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, width / 3)
    out[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    out += rng.normal(0, 3, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture
def synthetic():
    """The synthetic_rgb(rng, width, height) image maker."""
    return synthetic_rgb


def run_cli(*args, code: int = 0):
    """Run the CLI in process (typer's runner) and check its exit code; the result, for its output."""
    from typer.testing import CliRunner

    from archiver.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr if code == 0 else "")
    return result


def assert_flip_detected(archive: Path, tmp_path: Path, pos: int, xor: int) -> None:
    """``archive`` with byte ``pos`` XORed by ``xor``: opening it raises an ArchiverError, or
    ``verify --decode`` reports a problem; never a crash or a clean report."""
    from archiver.errors import ArchiverError
    from archiver.inspect import verify

    raw = bytearray(archive.read_bytes())
    raw[pos] ^= xor
    path = tmp_path / "flipped.nca"
    path.write_bytes(bytes(raw))
    try:
        report = verify(path, decode=True)
    except ArchiverError:
        return
    assert not report.ok
