"""``pack --codec pyramid`` with ``--denoiser``, ``--gan`` and ``--gan --perceptual msssim``, end to end:
pack (a few training steps on four 48×48 images), extract, and what the pack summary and ``info``
say each option did; and what the codec still refuses, in one line."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from archiver.cli_report import print_pack_report
from archiver.config import config_for_quality
from archiver.pack import pack
from conftest import run_cli as run
from conftest import write_images

#: Short runs: from the shipped base (no coarse-first phase), a check every 4 steps, the adversarial
#: phase from step 4, no latent refinement, one second for the post-filter.
FAST = dict(max_steps=8, check_every=4, refine_steps=0, disc_width=8)


def _pack(tmp_path, lpips_weights=None, **train):
    src = write_images(tmp_path / "src", 4, 48, 48)
    cfg = config_for_quality(4, time_limit=120, codec="pyramid", **{**FAST, **train})
    report = pack(src, tmp_path / "a.nca", cfg, lpips_weights=lpips_weights)
    summary = Console(file=io.StringIO(), width=200)
    print_pack_report(summary, report)
    info = json.loads(run("info", tmp_path / "a.nca", "--json").output)
    return src, report, summary.file.getvalue(), info


def _extracted_psnrs(src, archive, out) -> list[float]:
    run("extract", archive, "-o", out, "--quiet")
    psnrs = []
    for i in range(4):
        a = np.asarray(Image.open(src / f"{i}.png").convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(out / f"{i}.png").convert("RGB"), dtype=np.float64)
        psnrs.append(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))
    return psnrs


def test_denoiser_kept_is_applied_on_extract(tmp_path, monkeypatch):
    """A kept post-filter (kept whatever it gains, to test the read side) is stored and applied by
    extract: the stored PSNRs are the post-filter ones and verify --decode finds the pixels pack did."""
    import archiver.model.denoiser as denoiser

    monkeypatch.setattr(denoiser, "worth_keeping", lambda gain, cost, coded: True)
    src, report, summary, info = _pack(tmp_path, denoiser=True, denoiser_time=1.0)
    d = report.training["denoiser"]
    assert d["kept"] and d["steps"] > 0 and d["bytes"] > 0
    assert info["denoiser"] == d
    assert f"denoiser: kept: {d['gain_db']:+.3f} dB" in summary
    run("verify", tmp_path / "a.nca", "--decode")  # the stored CRCs are the post-filter pixels'
    psnrs = _extracted_psnrs(src, tmp_path / "a.nca", tmp_path / "out")
    assert np.mean(psnrs) == pytest.approx(info["mean_psnr"], abs=1e-3)
    # append keeps the post-filter (the old pixels stay) and measures the new image through it
    write_images(tmp_path / "new", 1, 48, 48, seed=5)
    (tmp_path / "new" / "0.png").rename(tmp_path / "new" / "added.png")
    run("append", tmp_path / "a.nca", tmp_path / "new", "--steps", "2", "--quiet")
    assert json.loads(run("info", tmp_path / "a.nca", "--json").output)["images"] == 5
    run("verify", tmp_path / "a.nca", "--decode")


def test_denoiser_is_decided_by_what_it_pays(tmp_path):
    """The real verdict: kept or not, the summary and info say so with its gain and bytes."""
    src, report, summary, info = _pack(tmp_path, denoiser=True, denoiser_time=1.0)
    d = info["denoiser"]
    assert set(d) == {"kept", "gain_db", "bytes", "steps", "stop_reason"}
    assert ("denoiser: kept" if d["kept"] else "denoiser: not kept") in summary
    psnrs = _extracted_psnrs(src, tmp_path / "a.nca", tmp_path / "out")
    assert np.mean(psnrs) == pytest.approx(info["mean_psnr"], abs=1e-3)


@pytest.mark.parametrize("perceptual", ["none", "msssim"])
def test_gan_and_perceptual(tmp_path, perceptual):
    """The adversarial phase starts at ``gan_start`` and trains the discriminator; with
    ``--perceptual msssim`` the distance is in the loss; summary and info say both."""
    src, report, summary, info = _pack(tmp_path, gan=True, gan_start=4, perceptual=perceptual)
    g = info["gan"]
    assert g == report.training["gan"]
    assert g["start_step"] == 4 and g["disc_steps"] > 0 and g["perceptual"] == perceptual
    assert any(h.get("gan_started") for h in report.training["history"])
    assert f"gan: adversarial from step 4 ({g['disc_steps']} discriminator steps)" in summary
    if perceptual == "none":
        assert info["perceptual"] is None and "perceptual:" not in summary
    else:
        p = info["perceptual"]
        assert p["kind"] == "msssim" and p["weight"] > 0 and 0 <= p["last_distance"] < 1
        assert "perceptual: msssim in the loss" in summary
    psnrs = _extracted_psnrs(src, tmp_path / "a.nca", tmp_path / "out")
    assert np.mean(psnrs) == pytest.approx(info["mean_psnr"], abs=1e-3) and min(psnrs) > 15


def _lpips_weights(folder):
    """Random LPIPS weights in the published layout (torchvision's alexnet-*.pth, lpips' alex.pth)."""
    import torch

    from archiver.model.perceptual import Lpips

    torch.manual_seed(0)
    folder.mkdir()
    net = {k: torch.randn_like(v) * 0.05 for k, v in Lpips().net.state_dict().items()}
    torch.save(net, folder / "alexnet-owt-7be5be79.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
               folder / "alex.pth")  # fmt: skip
    return folder


@pytest.mark.parametrize("perceptual", ["msssim", "lpips"])
def test_perceptual_alone_needs_no_gan(tmp_path, perceptual):
    """``--perceptual`` without ``--gan`` trains with the distance (LPIPS: with the user's weights)
    and records it."""
    weights = _lpips_weights(tmp_path / "lpips") if perceptual == "lpips" else None
    _, report, summary, info = _pack(tmp_path, lpips_weights=weights, max_steps=4, perceptual=perceptual)
    assert info["perceptual"]["kind"] == perceptual and info["perceptual"]["last_distance"] > 0
    assert info["gan"] is None
    assert f"perceptual: {perceptual}" in summary


@pytest.mark.parametrize("rate", [["--target-psnr", "30"], ["--max-bytes", "20K"]])
def test_denoiser_with_a_rate_search_is_refused_in_one_line(tmp_path, rate):
    src = write_images(tmp_path / "src", 1, 48, 48)
    result = run("pack", src, "-o", tmp_path / "x.nca", "--codec", "pyramid", "--denoiser", *rate, "--quiet", code=2)
    assert "--denoiser cannot be combined with " + rate[0] in result.output
    assert not (tmp_path / "x.nca").exists()


def test_a_resumed_adversarial_run_equals_an_uninterrupted_one(tmp_path):
    """The discriminator, its optimizer and the phase's record are in the checkpoint: a run
    interrupted during the adversarial phase continues exactly."""
    import torch

    from archiver.codecs.pyramid.plan import PyramidSpec
    from archiver.codecs.pyramid.train import PyramidRecipe, train_pyramid
    from archiver.model.checkpoint import Checkpointer

    rng = np.random.default_rng(0)
    images = [np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(2)]
    recipe = PyramidRecipe(coarse_steps=0)

    def train(steps, checkpointer=None):
        cfg = config_for_quality(4, codec="pyramid", max_steps=steps, check_every=2, refine_steps=0, warm_start=False,
                                 device="cpu", gan=True, gan_start=2, disc_width=8)  # fmt: skip
        return train_pyramid(images, cfg, PyramidSpec(), recipe=recipe, checkpointer=checkpointer)

    whole = train(5)
    first = train(3, Checkpointer(tmp_path / "ckpt", "test", every=1e9))
    assert first.summary()["gan"]["disc_steps"] == 1
    resumed = train(5, Checkpointer(tmp_path / "ckpt", "test", every=1e9))
    assert resumed.summary()["gan"] == whole.summary()["gan"]
    a, b = whole.codec.state_dict(), resumed.codec.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
