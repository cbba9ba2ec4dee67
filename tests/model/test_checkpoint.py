"""An interrupted and resumed training ends exactly where an uninterrupted one does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from archiver.config import ModelConfig, config_for_quality
from archiver.errors import InputError
from archiver.model.checkpoint import Checkpointer
from archiver.codecs.autoencoder.training import train_codec
from conftest import smooth_image

SMALL = ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1)


class Crash(Exception):
    pass


def _cfg(steps: int):
    cfg = config_for_quality(5, time_limit=600, max_steps=steps, check_every=10, batch=2, crop=32)
    return dataclasses.replace(cfg, model=SMALL)


def test_resume_continues_exactly(tmp_path):
    rng = np.random.default_rng(0)
    images = [smooth_image(rng, 48, 40) for _ in range(3)]
    whole = train_codec(images, _cfg(30))

    ckpt = Checkpointer(tmp_path / "ck", "same", every=0.0)  # save after every step

    def crash_at_17(p):
        if p.step == 17:
            raise Crash

    with pytest.raises(Crash):
        train_codec(images, _cfg(30), progress=crash_at_17, report_every=1, checkpointer=ckpt)
    assert ckpt.saves == 16 and torch.load(tmp_path / "ck" / "train.pt", weights_only=False)["step"] == 16
    resumed = train_codec(images, _cfg(30), checkpointer=Checkpointer(tmp_path / "ck", "same", every=1e9))
    assert resumed.steps == whole.steps == 30
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.history == whole.history


def test_checkpoint_of_another_pack_is_refused(tmp_path):
    Checkpointer(tmp_path / "ck", "input A").save({"step": 1})
    with pytest.raises(InputError, match="checkpoint was made for another input folder or other options"):
        Checkpointer(tmp_path / "ck", "input B").load()
