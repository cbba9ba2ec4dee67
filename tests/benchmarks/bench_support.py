"""Shared setup for the benchmark tests: puts the repo root on sys.path and defines fixtures.

This is deliberately *not* a conftest.py: the existing suite runs in pytest's default "prepend"
import mode and does ``from conftest import ...`` (tests/conftest.py); a second, non-package
conftest.py would replace sys.modules["conftest"] and break those imports. Each test module here
starts with ``import bench_support`` (its own folder is on sys.path in prepend mode) and imports
the fixtures it uses from this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from conftest import synthetic_rgb  # noqa: E402


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """Four seeded synthetic PNG photos (two sizes, one too small for 128 px crops)."""
    rng = np.random.default_rng(1234)
    src = tmp_path / "src"
    src.mkdir()
    for i, (w, h) in enumerate([(200, 160), (256, 140), (180, 300), (100, 90)]):
        Image.fromarray(synthetic_rgb(rng, w, h)).save(src / f"photo_{i}.png")
    (src / "notes.txt").write_text("not an image")
    return src


def write_photos(folder: Path, count: int, width: int = 160, height: int = 144) -> Path:
    """``count`` seeded synthetic PNGs of width × height pixels in a new ``folder``."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(synthetic_rgb(rng, width, height)).save(folder / f"p{i}.png")
    return folder
