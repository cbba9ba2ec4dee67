from __future__ import annotations

import bench_support  # noqa: F401  (repo root on sys.path; must come first)
from bench_support import png_folder  # noqa: F401  (fixture)

import numpy as np
import pytest
from PIL import Image

from benchmarks.regimes import REGIMES, build_regime, list_sources


def _pixels(paths):
    return [np.asarray(Image.open(p)) for p in paths]


def test_dataset_crops_are_seeded_and_prefix_stable(png_folder, tmp_path):
    a = build_regime("dataset", png_folder, tmp_path / "a", seed=0, limit=6)
    b = build_regime("dataset", png_folder, tmp_path / "b", seed=0, limit=3)
    c = build_regime("dataset", png_folder, tmp_path / "c", seed=1, limit=6)
    assert len(a) == 6 and len(b) == 3
    assert [p.name for p in a[:2]] == ["dataset_000.png", "dataset_001.png"]
    pa, pb, pc = _pixels(a), _pixels(b), _pixels(c)
    assert all(x.shape == (128, 128, 3) and x.dtype == np.uint8 for x in pa)
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb))  # limit gives a prefix
    assert not all(np.array_equal(x, y) for x, y in zip(pa, pc))  # seed matters


def test_tiny_thumbnails(png_folder, tmp_path):
    paths = build_regime("tiny", png_folder, tmp_path / "t", seed=0, limit=5)
    assert len(paths) == 5
    assert all(Image.open(p).size == (32, 32) and Image.open(p).mode == "RGB" for p in paths)
    assert REGIMES["tiny"].count == 2000 and REGIMES["dataset"].count == 400


def test_album_copies_files_unchanged(png_folder, tmp_path):
    paths = build_regime("album", png_folder, tmp_path / "al", seed=0)
    assert len(paths) == 4  # fewer photos than 48: all of them
    sources = {p.read_bytes() for p in list_sources(png_folder)}
    assert {p.read_bytes() for p in paths} == sources
    again = build_regime("album", png_folder, tmp_path / "al", seed=0, limit=2)
    assert [p.name for p in again] == [p.name for p in paths[:2]]
    assert sorted(x.name for x in (tmp_path / "al").glob("*.png")) == sorted(p.name for p in again)


def test_errors(tmp_path, png_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no PNG"):
        build_regime("dataset", empty, tmp_path / "o", limit=1)
    with pytest.raises(KeyError):
        build_regime("nope", png_folder, tmp_path / "o")


def test_regimes_carry_no_metadata(tmp_path):
    """An ICC profile in a source must not reach the regime's files (it would be charged to the
    archiver alone: the classic codecs are measured on pixels)."""
    import bench_support  # noqa: F401
    from PIL import Image, ImageCms

    from benchmarks.regimes import build_regime

    src = tmp_path / "src"
    src.mkdir()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(src / "a.png", icc_profile=icc)
    for name in ("album", "dataset", "tiny"):
        for path in build_regime(name, src, tmp_path / name, limit=2):
            assert "icc_profile" not in Image.open(path).info, (name, path)


def test_splits_partition_the_sources_by_name(tmp_path):
    """train and heldout are disjoint, cover every photo, and depend on the file name alone."""
    from benchmarks.regimes import split_of

    folder = tmp_path / "src"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    every = list_sources(folder)
    train, heldout = list_sources(folder, "train"), list_sources(folder, "heldout")
    assert train and heldout  # 10 names: both halves are populated
    assert sorted(train + heldout) == every and not set(train) & set(heldout)
    assert all(split_of(p) == "train" for p in train) and all(split_of(p) == "heldout" for p in heldout)
    assert split_of(tmp_path / "elsewhere" / "p0.png") == split_of(folder / "p0.png")
    paths = build_regime("album", folder, tmp_path / "h", split="heldout")  # only heldout photos, unchanged
    assert sorted(p.read_bytes() for p in paths) == sorted(p.read_bytes() for p in heldout)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        list_sources(folder, "test")
