import io

import numpy as np
import pytest
from PIL import Image

from archiver.collection.images import load_image, pixel_crc32, restore_image, save_image
from archiver.container.format import ImageMode
from conftest import make_exif, make_icc, smooth_image


def _save(tmp_path, name, im, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "mode,expected", [("RGB", ImageMode.RGB), ("L", ImageMode.L), ("RGBA", ImageMode.RGBA), ("LA", ImageMode.LA)]
)
def test_modes_are_coded(tmp_path, rng, mode, expected):
    im = Image.fromarray(smooth_image(rng, 21, 13)).convert(mode)
    src, reason = load_image(_save(tmp_path, "a.png", im))
    assert reason == "" and src.mode is expected and src.rgb.shape == (13, 21, 3)
    restored = restore_image(src.rgb, src.mode, src.blobs)
    assert restored.mode == mode and restored.size == (21, 13)
    if "A" in mode:
        np.testing.assert_array_equal(np.asarray(restored.getchannel("A")), np.asarray(im.getchannel("A")))


def test_palette_keeps_its_palette(tmp_path, rng):
    im = Image.fromarray(smooth_image(rng, 30, 20)).quantize(8)
    src, _ = load_image(_save(tmp_path, "p.png", im))
    restored = restore_image(src.rgb, src.mode, src.blobs)
    assert restored.mode == "P"
    assert restored.getpalette()[: 8 * 3] == im.getpalette()[: 8 * 3]
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(im))  # exact pixels map back exactly


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda rng: Image.fromarray(rng.integers(0, 65535, (8, 8)).astype(np.uint16)), "mode I"),
        (lambda rng: Image.new("CMYK", (8, 8)), "mode CMYK"),
    ],
)
def test_kept_as_is(tmp_path, rng, make, reason):
    path = _save(tmp_path, "x.tiff", make(rng))
    src, why = load_image(path)
    assert src is None and reason in why


def test_animation_kept_as_is(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    src, why = load_image(path)
    assert src is None and "2 frames" in why


def test_truncated_png_kept_as_is(tmp_path, rng):
    buf = io.BytesIO()
    Image.fromarray(smooth_image(rng, 40, 40)).save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:200])
    src, why = load_image(path)
    assert src is None and "not decodable" in why


def test_jpeg_metadata_written_back(tmp_path, rng):
    icc = make_icc()
    path = _save(tmp_path, "a.jpg", Image.fromarray(smooth_image(rng, 32, 24)), exif=make_exif(),
                 icc_profile=icc, dpi=(300, 300))  # fmt: skip
    src, _ = load_image(path)
    out = io.BytesIO()
    save_image(restore_image(src.rgb, src.mode, src.blobs), out, "JPEG", src.info, src.blobs)
    back = Image.open(io.BytesIO(out.getvalue()))
    assert back.info["icc_profile"] == icc
    assert back.getexif()[0x010F] == "ArchiverTestCam"
    assert tuple(round(v) for v in back.info["dpi"]) == (300, 300)


def test_png_text_written_back(tmp_path, rng):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "kept")
    src, _ = load_image(_save(tmp_path, "t.png", Image.fromarray(smooth_image(rng, 8, 8)), pnginfo=info))
    out = io.BytesIO()
    save_image(restore_image(src.rgb, src.mode, src.blobs), out, "PNG", src.info, src.blobs)
    assert Image.open(io.BytesIO(out.getvalue())).text["Comment"] == "kept"


def test_pixel_crc_depends_on_pixels(rng):
    a = Image.fromarray(smooth_image(rng, 8, 8))
    b = a.copy()
    b.putpixel((0, 0), (0, 0, 0) if a.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert pixel_crc32(a) == pixel_crc32(a.copy()) != pixel_crc32(b)
