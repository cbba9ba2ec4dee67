"""``look.png`` of ``archiver bench``: the same crop from the original, the archiver, AVIF and JPEG at equal bytes."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from archiver.bench import look
from archiver.bench.classic import CODECS, encode_decode
from archiver.bench.folder import look_point
from archiver.errors import InputError
from conftest import smooth_image

H, W = 48, 64  # pixels: smaller than the crop, so a pane shows the whole image
CELL = look.CROP_PX * look.ZOOM  # pane side in look.png, pixels


@pytest.fixture
def images():
    """Three seeded originals and a fake archiver output of each (the original plus noise)."""
    rng = np.random.default_rng(7)
    originals = [smooth_image(rng, W, H) for _ in range(3)]
    decoded = [np.clip(o.astype(np.int16) + rng.integers(-6, 7, o.shape), 0, 255).astype(np.uint8) for o in originals]
    return originals, decoded


def pane(sheet: np.ndarray, row: int, col: int) -> np.ndarray:
    """The image area of one pane of look.png (its crop sits at the cell's top left)."""
    top = look.GAP_PX + row * (look.LABEL_PX + CELL + look.GAP_PX) + look.LABEL_PX
    left = look.GAP_PX + col * (CELL + look.GAP_PX)
    return sheet[top : top + H * look.ZOOM, left : left + W * look.ZOOM]


def zoom(rgb: np.ndarray) -> np.ndarray:
    return rgb.repeat(look.ZOOM, axis=0).repeat(look.ZOOM, axis=1)


def test_look_png_layout_and_panes(images, tmp_path):
    originals, decoded = images
    target = 700.0  # bytes the archiver spends on each image (2 bpp at 48x64)
    rows = look.write_look(tmp_path / "look.png", originals, decoded, [target] * 3, archiver_label="archiver q4")
    with Image.open(tmp_path / "look.png") as im:
        gap = look.GAP_PX
        assert im.size == (4 * (CELL + gap) + gap, 3 * (look.LABEL_PX + CELL + gap) + gap)
        sheet = np.asarray(im.convert("RGB"))
    assert [[p["codec"] for p in row] for row in rows] == [["original", "archiver q4", "avif", "jpeg"]] * 3
    for r, (orig, dec) in enumerate(zip(originals, decoded)):
        assert np.array_equal(pane(sheet, r, 0), zoom(orig))  # the original's pixels, untouched
        assert np.array_equal(pane(sheet, r, 1), zoom(dec))
        assert rows[r][1]["bytes"] == target and 30 < rows[r][1]["psnr"] < 40
        jpeg = rows[r][3]
        data, out, _, _ = encode_decode(Image.fromarray(orig), CODECS["jpeg"], jpeg["setting"])
        assert jpeg["bytes"] == len(data) and np.array_equal(pane(sheet, r, 3), zoom(out))
        # the setting nearest the archiver's bytes: its neighbours are no nearer
        for q in (jpeg["setting"] - 1, jpeg["setting"] + 1):
            if 1 <= q <= 95:
                size = len(encode_decode(Image.fromarray(orig), CODECS["jpeg"], q)[0])
                assert abs(size - target) >= abs(jpeg["bytes"] - target)
        panes = [pane(sheet, r, c) for c in range(4)]
        assert all(not np.array_equal(panes[0], p) for p in panes[1:])  # every codec changed the pixels
        if CODECS["avif"].unavailable() is None:
            assert rows[r][2]["bytes"] > 0 and 0 <= rows[r][2]["setting"] <= 100


def test_a_missing_avif_leaves_its_pane_empty(images, tmp_path, monkeypatch):
    originals, decoded = images
    monkeypatch.setitem(CODECS, "avif", dataclasses.replace(CODECS["avif"], unavailable=lambda: "no AVIF here"))
    rows = look.write_look(tmp_path / "look.png", originals[:1], decoded[:1], [500.0])
    assert rows[0][2] == {"codec": "avif", "setting": None, "error": "not available: no AVIF here"}
    with Image.open(tmp_path / "look.png") as im:
        assert im.size[1] == look.LABEL_PX + CELL + 2 * look.GAP_PX  # one row
        sheet = np.asarray(im.convert("RGB"))
    assert (pane(sheet, 0, 2) == 200).all() and rows[0][3]["bytes"] > 0  # gray pane; JPEG still there


def test_choose_images_takes_the_largest_in_scan_order():
    sizes = [(10, 10), (20, 20), (5, 5), (20, 20), (30, 1)]
    assert look.choose_images(sizes) == [0, 1, 3]
    assert look.choose_images(sizes[:2]) == [0, 1]


@pytest.mark.parametrize("qualities,targets,expected", [
    ((2, 4, 6), (), 1), ((2, 6), (), 0), ((8,), (), 0), ((7, 5, 1), (), 1), ((4,), (35.0, 30.0, 40.0), 0),
])  # fmt: skip
def test_look_point(qualities, targets, expected):
    assert look_point(qualities, targets) == expected


def test_write_look_refuses_mismatched_inputs(images, tmp_path):
    originals, decoded = images
    with pytest.raises(InputError, match="one decoded image and one byte count per original"):
        look.write_look(tmp_path / "look.png", originals, decoded[:2], [1.0] * 3)
    with pytest.raises(InputError, match=r"image 1: original \(48, 64, 3\) and decoded \(48, 32, 3\)"):
        look.write_look(tmp_path / "look.png", originals[:1], [decoded[0][:, :32]], [1.0])
    assert not (tmp_path / "look.png").exists()
