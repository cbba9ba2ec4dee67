"""``pack --time-limit T`` bounds the whole pack (training, refinement, coding, writing; scanning
comes on top), and a pack without ``--codec`` / ``--quality`` uses the default codec at its default
quality."""

from __future__ import annotations

import json
import time

import pytest

from archiver.codecs import DEFAULT_CODEC, codec
from archiver.config import config_for_quality
from archiver.time_budget import TRAIN_MIN_SHARE, TRAIN_OVERHEAD_SECONDS, TimeBudget
from conftest import run_cli as run, write_images

#: The limit of the end-to-end packs, and how far past it they may end (seconds): the reserve for
#: coding and writing is an estimate, and the test machine may be shared.
LIMIT, SLACK = 20.0, 5.0


def test_default_codec_and_quality_are_pyramid_6():
    cfg = config_for_quality()
    assert (cfg.codec, cfg.quality) == (DEFAULT_CODEC, 6) == ("pyramid", codec("pyramid").DEFAULT_QUALITY)
    assert cfg.train.lmbda == codec("pyramid").LAMBDAS[6]
    assert not cfg.auto_quality  # the codec's default, not chosen from a rate target
    assert config_for_quality(codec="autoencoder").quality == 4
    assert config_for_quality(None, max_bytes=10**6).auto_quality  # --max-bytes alone still chooses it
    assert config_for_quality(3).quality == 3


def test_cli_default_is_pyramid_6(tmp_path, monkeypatch):
    import archiver.pack

    seen = []
    monkeypatch.setattr(archiver.pack, "pack", lambda source, output, cfg, **kw: seen.append(cfg))  # reports None
    src = write_images(tmp_path / "src", 1, 32, 32)
    run("pack", src, "-o", tmp_path / "x.nca", "--quiet")
    run("pack", src, "-o", tmp_path / "x.nca", "--codec", "autoencoder", "--quiet")
    assert [(c.codec, c.quality) for c in seen] == [("pyramid", 6), ("autoencoder", 4)]
    assert seen[0].train.time_limit == 900.0


@pytest.mark.parametrize("name", ["pyramid", "autoencoder"])
def test_plan_splits_the_limit(name):
    cfg = config_for_quality(codec=name, time_limit=240)
    b = TimeBudget.plan(cfg, 400 * 128 * 128, started=0.0)
    assert b.deadline == 240.0 and not b.cut
    refine = 240 - b.train - b.reserve - TRAIN_OVERHEAD_SECONDS  # refinement's share, before training ends
    assert b.train > 0 and refine > 0
    assert refine / (b.train + refine) == pytest.approx(codec(name).REFINE_TIME_FACTOR, abs=0.05)
    off = TimeBudget.plan(config_for_quality(codec=name, time_limit=240, refine_steps=0), 400 * 128 * 128)
    assert off.train > b.train + refine - 5  # refinement off: training has it all
    den = TimeBudget.plan(config_for_quality(codec=name, time_limit=240, denoiser=True), 400 * 128 * 128)
    assert den.denoiser > 0 and den.train + den.reserve + den.denoiser < 240
    asked = TimeBudget.plan(config_for_quality(codec=name, time_limit=240, refine_time=3600), 400 * 128 * 128)
    assert asked.train == pytest.approx(TRAIN_MIN_SHARE * (b.train + refine))  # training keeps its floor


def test_refine_budget_keeps_its_deadline():
    from archiver.model.refine import RefineBudget

    now = time.monotonic()
    late = RefineBudget(30, 100.0, 1000, deadline=now - 1)
    assert late.steps_for(500) == 0 and late.stop_time() <= time.monotonic()
    priced = RefineBudget(30, 10.0, 1000, cost=1e-3)  # 1 ms per pixel-step: 10 s buys 10 steps of 1000 px
    assert priced.steps_for(500) == 20  # the first image, priced before any is measured: up to twice its share
    capped = RefineBudget(30, 100.0, 1000, cost=1e-3, deadline=time.monotonic() + 10.1)
    assert capped.steps_for(250) == 20 and capped.stop_time() <= time.monotonic() + 5.06  # twice its share: ~5 s
    assert RefineBudget(30, 100.0, 1000).steps_for(500) == 30  # no price, no deadline: the first measures


def _timed_pack(tmp_path, **train):
    """Pack three small images with ``LIMIT``; (seconds from the end of scanning to the end, report)."""
    from archiver.pack import pack

    src = write_images(tmp_path / "src", 3, 96, 64)
    marks = {}
    cfg = config_for_quality(time_limit=LIMIT, **train)
    report = pack(src, tmp_path / "x.nca", cfg, progress=lambda e: marks.__setitem__(e.stage, time.monotonic()))
    return time.monotonic() - marks["scan"], report


def test_time_limit_bounds_the_default_pack(tmp_path):
    seconds, report = _timed_pack(tmp_path)
    budget = report.training["time_budget"]
    assert seconds <= LIMIT + SLACK, (seconds, budget)
    assert budget["limit_s"] == LIMIT
    assert 0 < budget["train_s"] < LIMIT and budget["reserve_s"] > 0
    assert budget["train_s"] + budget["refine_s"] + budget["reserve_s"] <= LIMIT + SLACK


def test_refine_time_beyond_the_limit_is_cut(tmp_path):
    seconds, report = _timed_pack(tmp_path, refine_time=600.0)
    budget = report.training["time_budget"]
    assert seconds <= LIMIT + SLACK, (seconds, budget)
    assert budget["refine_s"] < LIMIT
    assert any(c.startswith("--refine-time") for c in budget["cut"]), budget
    info = json.loads(run("info", tmp_path / "x.nca", "--json").output)
    assert info["time_budget"] == budget


def test_cli_summary_says_how_the_limit_was_spent(tmp_path):
    src = write_images(tmp_path / "src", 2, 64, 64)
    result = run("pack", src, "-o", tmp_path / "x.nca", "--time-limit", "12s", "--refine-time", "10m", "--quiet")
    assert "time limit 12 s: training" in result.output
    assert "cut: --refine-time" in result.output


def test_effort_sets_the_limit_from_the_pixels():
    from archiver.time_budget import EFFORT_MIN_SECONDS, EFFORT_SECONDS_PER_MPX

    cfg = config_for_quality(effort=4.0)
    assert TimeBudget.plan(cfg, 2_000_000, started=0.0).limit == pytest.approx(4.0 * EFFORT_SECONDS_PER_MPX * 2.0)
    assert TimeBudget.plan(cfg, 1000, started=0.0).limit == EFFORT_MIN_SECONDS  # a handful of pixels
    assert TimeBudget.plan(config_for_quality(time_limit=90), 2_000_000, started=0.0).limit == 90


def test_effort_and_time_limit_together_are_refused(tmp_path):
    src = write_images(tmp_path / "src", 1, 32, 32)
    result = run("pack", src, "-o", tmp_path / "a.nca", "--effort", "2", "--time-limit", "1m", code=2)
    assert "error: --effort and --time-limit both set the pack's time: give one of them" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "a.nca").exists()
