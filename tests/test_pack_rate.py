"""``pack --target-psnr`` and ``pack --max-bytes`` (``--codec pyramid``): the promises end to end,
their searches on known curves, their bad values, and per-image gains in the archive."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from archiver.codec.gain import GAIN_MAX, GAIN_MIN, apply_gain, check_gain, gain_value
from archiver.codecs.pyramid.levels import quality_for as pyramid_quality_for
from archiver.config import config_for_quality, parse_size
from archiver.errors import CorruptArchiveError, InputError
from archiver.inspect import list_entries
from archiver.codecs.pyramid.rate import BUDGET_AIM, BUDGET_SLACK, BudgetError, BudgetFit, TargetCoder
from conftest import png_bytes, run_cli as run, write_images

FAST = ("--codec", "pyramid", "--max-steps", "40", "--refine", "3", "--quiet")
#: dB: within reach of every smooth test image after 40 steps of fine-tuning (their ceiling is
#: 23–27 dB: sharp discs on gradients), far out of reach of uniform noise (about 10 dB)
TARGET = 22.0


def _noise_image(folder: Path, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    (folder / "noise.png").write_bytes(png_bytes(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))


@pytest.fixture(scope="module")
def target_pack(tmp_path_factory):
    base = tmp_path_factory.mktemp("target")
    src = write_images(base / "src", 4, 48, 40)
    _noise_image(src)
    archive = base / "t.nca"
    result = run("pack", src, "-o", archive, "--target-psnr", str(TARGET), *FAST)
    return src, archive, result.output


def _listing(archive: Path) -> dict[str, float]:
    return {e["name"]: e["psnr"] for e in list_entries(archive) if e["kind"] == "image"}


def test_every_image_reaches_the_target_or_is_reported(target_pack):
    src, archive, output = target_pack
    psnrs = _listing(archive)
    info = json.loads(run("info", archive, "--json").output)
    assert info["target_psnr"] == TARGET
    smooth = {n: p for n, p in psnrs.items() if n != "noise.png"}
    assert smooth and all(p >= TARGET for p in smooth.values()), psnrs
    assert max(smooth.values()) < TARGET + 3  # coded for the target, not far above it
    assert psnrs["noise.png"] < TARGET  # uniform noise: beyond this codec's ceiling, and said so
    assert "noise.png" in output and "below the target" in output
    assert info["min_psnr"] == pytest.approx(min(psnrs.values()), abs=0.01)


def test_target_archive_decodes_as_measured(target_pack, tmp_path):
    _, archive, _ = target_pack
    run("verify", archive, "--decode")
    info = json.loads(run("info", archive, "--json").output)
    # images carry their own gains and the base's graph is named, not stored: what every pack writes
    assert info["codec"]["version"] == 5 and info["codec"]["base"]["graph"]


def test_target_gains_survive_append(target_pack, tmp_path):
    _, archive, _ = target_pack
    copy = tmp_path / "a.nca"
    copy.write_bytes(archive.read_bytes())
    before = _listing(copy)
    more = tmp_path / "more"
    more.mkdir()
    write_images(more / "extra", 1, 32, 32, seed=5)  # added as extra/0.png
    run("append", copy, more, "--steps", "3", "--quiet")
    run("verify", copy, "--decode")  # the old images still decode to the pixels pack measured
    after = _listing(copy)
    assert {n: after[n] for n in before} == before


def test_strict_refuses_an_image_below_the_target(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _noise_image(src)
    out = tmp_path / "s.nca"
    result = run("pack", src, "-o", out, "--target-psnr", "30", "--strict", *FAST, code=2)
    assert "noise.png: reaches only" in result.output and "below --target-psnr 30" in result.output
    assert not out.exists() and not list(tmp_path.glob(".s.nca*"))


@pytest.mark.parametrize("budget", [9_000, 11_000, 14_000])
def test_max_bytes_lands_just_under_the_budget(tmp_path, budget):
    src = write_images(tmp_path / "src", 4, 48, 40)
    (src / "notes.txt").write_text("kept as it is " * 50)
    out = tmp_path / "b.nca"
    run("pack", src, "-o", out, "--max-bytes", str(budget), *FAST)
    size = out.stat().st_size
    assert (1 - BUDGET_SLACK) * budget <= size <= budget, size
    run("verify", out, "--decode")
    assert not list(tmp_path.glob(".b.nca*"))  # no scratch archive, no resume folder


def _photo_crops(folder: Path, count: int, side: int) -> Path:
    """Centre crops of the first heldout development photos (the test skips where they are absent)."""
    from PIL import Image

    from benchmarks.regimes import DEFAULT_SRC_DIR, list_sources

    if not DEFAULT_SRC_DIR.is_dir():
        pytest.skip(f"no development photos in {DEFAULT_SRC_DIR}")
    folder.mkdir()
    for n, path in enumerate(list_sources(DEFAULT_SRC_DIR, "heldout")[:count]):
        with Image.open(path) as im:
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im.convert("RGB").crop((left, top, left + side, top + side)).save(folder / f"{n}.png")
    return folder


def test_max_bytes_lands_within_the_slack_on_photos(tmp_path):
    # Photos, unlike the smooth test images: a refined latent is integers times its gain, so a new
    # gain for all moved the bytes in steps of several percent and this pack landed at 95.0 % of the
    # budget (issue 33). Coded at the gain it was refined at, it is 2.5 % under (its 5 ICC profiles,
    # two thirds of the archive, guessed right); nudged images fill that, or the training summary
    # says why they could not.
    from archiver.codecs.pyramid.budget import SHORT_REASONS
    from archiver.container.reader import ArchiveReader

    src = _photo_crops(tmp_path / "src", 12, 64)
    out, budget = tmp_path / "b.nca", 14_000
    run("pack", src, "-o", out, "--max-bytes", str(budget), *FAST)
    size = out.stat().st_size
    with ArchiveReader(out) as r:
        summary = r.training["budget"]
    assert size <= budget
    assert size >= (1 - BUDGET_SLACK) * budget or summary["short"] in SHORT_REASONS.values(), (size, summary)
    assert summary["finer"] + summary["coarser"] > 0
    run("verify", out, "--decode")  # the nudged images' gain codes decode as pack measured them


def test_merged_counts_are_the_collections():
    from archiver.codecs.pyramid.coder import HistogramCounter
    from archiver.codecs.pyramid.rate import merge_counters

    rng = np.random.default_rng(3)
    parts = [(rng.integers(0, 4, 50), rng.integers(-5 - k, 3 + 2 * k, 50)) for k in range(4)]
    whole, each = HistogramCounter(), []
    for bucket, residual in parts:
        whole.add(bucket, residual)
        each.append(HistogramCounter())
        each[-1].add(bucket, residual)
    merged = merge_counters(each)
    assert merged.lows == whole.lows and all(np.array_equal(merged.hist[k], whole.hist[k]) for k in whole.hist)
    assert merged.ideal_bits(merged.tables()) == whole.ideal_bits(whole.tables())


def test_an_archive_left_under_the_budget_says_why(tmp_path):
    from archiver.codecs.pyramid.budget import SHORT_REASONS, write_within_budget

    class Nudges:  # what code_for_budget leaves in CodedImages.refit: nothing more to change
        stopped, calls = "granularity", 0

        def __call__(self, rest):
            self.calls += 1
            return False

    class Coded:
        training, predicted_bytes, refit = {"budget": {}}, 9_000, Nudges()

    sizes = iter([9_500, 9_540])  # 5 % under the budget, then with the reason in the summary

    def write(path):
        size = next(sizes)
        path.write_bytes(b"x" * size)
        return size

    coded, out = Coded(), tmp_path / "x.nca"
    assert write_within_budget(write, coded, 10_000, out) == 9_540 == out.stat().st_size
    assert coded.refit.calls == 1  # no further writes once nudging has nothing left to change
    assert coded.training["budget"]["short"] == SHORT_REASONS["granularity"]


def test_impossible_budget_fails_before_training(tmp_path):
    src = write_images(tmp_path / "src", 2, 32, 32)
    out = tmp_path / "b.nca"
    started = time.monotonic()
    result = run("pack", src, "-o", out, "--codec", "pyramid", "--max-bytes", "1k", "--time-limit", "10m", "--quiet", code=2)
    assert time.monotonic() - started < 60  # a 10-minute training never started
    assert "too small" in result.output and "1,000" in result.output
    assert not out.exists()


def test_budget_below_the_smallest_coded_archive_is_refused_after_training(tmp_path):
    src = write_images(tmp_path / "src", 6, 64, 64)
    out = tmp_path / "b.nca"
    result = run("pack", src, "-o", out, "--max-bytes", "3000", *FAST, code=2)
    assert "too small" in result.output
    assert not out.exists() and not list(tmp_path.glob(".b.nca*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (("--target-psnr", "-1"), "--target-psnr"),
        (("--target-psnr", "0"), "--target-psnr"),
        (("--target-psnr", "61"), "at most 60"),
        (("--target-psnr", "nan"), "--target-psnr"),
        (("--max-bytes", "4Q"), "cannot read size"),
        (("--max-bytes", "0"), "positive"),
        (("--max-bytes", "lots"), "cannot read size"),
        (("--target-psnr", "30", "--max-bytes", "1G"), "cannot be used together"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, args, message):
    src = write_images(tmp_path / "src", 1, 16, 16)
    out = tmp_path / "x.nca"
    result = run("pack", src, "-o", out, "--codec", "pyramid", *args, "--quiet", code=2)
    assert message in result.output
    assert not out.exists()


def test_rate_options_need_the_pyramid_codec(tmp_path):
    src = write_images(tmp_path / "src", 1, 16, 16)
    result = run("pack", src, "-o", tmp_path / "x.nca", "--codec", "autoencoder", "--target-psnr", "30", "--quiet",
                 code=2)  # fmt: skip
    assert "--codec pyramid" in result.output


def test_parse_size():
    assert parse_size("123") == 123
    assert parse_size("500M") == 500_000_000
    assert parse_size("4G") == 4_000_000_000
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("4GiB") == 4 * 1024**3
    for bad in ("", "G", "4Q", "-5", "1e3", "four"):
        with pytest.raises(InputError):
            parse_size(bad)


def test_quality_follows_the_target_and_the_budget():
    by_target = [pyramid_quality_for(target_psnr=d) for d in (26, 28, 30, 32, 34, 36, 38, 45)]
    by_bpp = [pyramid_quality_for(bpp=b) for b in (0.3, 0.6, 0.9, 1.3, 1.9, 2.7, 5.0)]
    assert by_target == sorted(by_target) and by_target[-1] == 8 and by_target[0] <= 2
    assert by_bpp == sorted(by_bpp) and by_bpp[-1] == 8
    assert config_for_quality(None, codec="pyramid", target_psnr=36).quality == pyramid_quality_for(target_psnr=36)
    assert config_for_quality(None, codec="pyramid", max_bytes=10**6).auto_quality
    assert config_for_quality(5, codec="pyramid", target_psnr=36).quality == 5  # given: kept


def test_gain_codes():
    assert gain_value(0) == 1.0 and gain_value(16) == 2.0 and gain_value(-16) == 0.5
    assert gain_value(8) == np.float32(2**0.5)
    latent = np.array([[[3, -2]]], np.int32)
    assert apply_gain(latent, 0) is latent
    assert apply_gain(latent, 16).tolist() == [[[6.0, -4.0]]]
    for bad in (GAIN_MAX + 1, GAIN_MIN - 1, 1.5, True, "3", None):
        with pytest.raises(CorruptArchiveError):
            check_gain(bad)


def _searcher(curve, target: float) -> TargetCoder:
    coder = TargetCoder.__new__(TargetCoder)
    coder.target, coder.decodes = target, 0
    coder._measure = lambda z, k, im: (None, curve(k), 0)
    return coder


@pytest.mark.parametrize("start", [0, -30, 40])
def test_target_search_finds_the_coarsest_code_that_holds(start):
    coder = _searcher(lambda k: 40.0 - 0.4 * k, 30.0)  # 30 dB exactly at k = 25
    assert coder._search(None, None, start) == 25
    assert coder.decodes < 20


def test_target_search_stops_at_the_ceiling():
    # never reaches 50 dB; flat below k = -20: the coarsest code within 0.1 dB of the best
    coder = _searcher(lambda k: min(35.0, 27.0 - 0.4 * k), 50.0)
    assert coder._search(None, None, 0) == -20  # 34.9 dB and more from k = -19.75 down


def test_budget_fit_lands_within_the_slack(tmp_path, monkeypatch):
    fit, tried = BudgetFit(tmp_path, None, None, None), []

    def coded(log2_gain):  # bytes fall with the gain, not quite a power law, in steps of a byte
        tried.append(log2_gain)
        return int(2_000_000 * 2.0 ** (-1.3 * log2_gain + 0.04 * log2_gain**2)), None

    monkeypatch.setattr(fit, "coded", coded)
    log2_gain, size, _ = fit.fit(500_000, 20_000)
    assert size == coded(log2_gain)[0]  # the bytes it reports are those of the gain it returns
    aim = (500_000 - 20_000) * BUDGET_AIM
    assert (1 - BUDGET_SLACK) * aim <= size <= aim
    assert len(tried) <= 10  # regula falsi: a handful of passes over the collection, not a dozen
    with pytest.raises(BudgetError, match="too small"):
        fit.fit(40_000, 20_000)  # 2e6 / 64 = 31,250 bytes at the coarsest gain
