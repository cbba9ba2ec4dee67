"""Pack streams the collection when it is larger than its memory budgets (here shrunk to force it)."""

import dataclasses

import numpy as np
from PIL import Image

from archiver.collection import pool
from archiver.config import ModelConfig, config_for_quality
from archiver.container.reader import ArchiveReader
from archiver.extract import extract
from archiver.inspect import verify
from archiver.pack import pack
from conftest import write_images


def test_streaming_pack_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "RESIDENT_BYTES", 1)  # every image released after it is read
    monkeypatch.setattr(pool, "POOL_PIXELS", 3 * pool.POOL_TILE**2)  # training sees ~3 tiles
    src = write_images(tmp_path / "src", 5, 300, 200)
    cfg = config_for_quality(6, time_limit=600, max_steps=60, check_every=20, batch=2, crop=64, denoiser=True,
                             denoiser_time=2, refine_steps=3)  # the search: annealing is tested elsewhere  # fmt: skip
    cfg = dataclasses.replace(cfg, model_size="custom", model=ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1))
    report = pack(src, tmp_path / "a.nca", cfg)
    assert report.images == 5 and report.latent_bytes > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nca", "src"]  # spool and checkpoints gone
    assert verify(tmp_path / "a.nca", decode=True).ok  # every stored PSNR/CRC is what extract gives
    extract(tmp_path / "a.nca", tmp_path / "out")
    with ArchiveReader(tmp_path / "a.nca") as r:
        for e in r.entries:
            a = np.asarray(Image.open(src / e.name).convert("RGB"), dtype=float)
            b = np.asarray(Image.open(tmp_path / "out" / e.name).convert("RGB"), dtype=float)
            # format version 3 stores PSNR in centi-dB: within half of 0.01 dB of the measured value
            assert abs(10 * np.log10(255**2 / np.mean((a - b) ** 2)) - e.psnr) <= 0.005 + 1e-9
        assert "denoiser" in r.training
