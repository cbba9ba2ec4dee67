"""``pack --codec pyramid`` under torchrun (2 CPU processes, gloo), ``--resume`` after a kill,
``append`` to a default archive and ``--appendable`` (the collection's own encoder is stored)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from archiver.api import open as open_archive
from archiver.container.reader import ArchiveReader
from archiver.inspect import archive_info, verify
from conftest import run_cli as run
from conftest import write_images

PYRAMID = ["--codec", "pyramid", "--time-limit", "10m", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core a process


def _pack_cmd(src, out, *extra) -> list[str]:
    return [sys.executable, "-m", "archiver", "pack", str(src), "-o", str(out), *PYRAMID, *extra]


def test_torchrun_two_processes_pack_a_pyramid_archive(tmp_path):
    src = write_images(tmp_path / "src", 3, 64, 48)
    out = tmp_path / "a.nca"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *_pack_cmd(src, out, "--max-steps", "30", "--refine", "3")[1:]]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**ENV, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("images coded") == 1  # rank 0 alone codes, writes and reports
    assert "trained by 2 processes" in proc.stdout
    info = archive_info(out)
    assert info["images"] == 3 and info["steps"] == 30 and info["processes"] == 2
    assert info["codec"]["name"] == "pyramid"
    assert verify(out, decode=True).ok
    run("extract", out, "-o", tmp_path / "x", "--quiet")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["0.png", "1.png", "2.png"]


# --- two ranks in one test process (torch.multiprocessing): identical weights, exact resume -------


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.kron(rng.integers(0, 256, (12, 12, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(3)]


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    """One torchrun-like rank: an uninterrupted run of 12 steps, then 6 steps checkpointed and a
    resumed run to 12 (one process group for all three); each result to ``folder/<run>-<rank>.pt``."""
    import torch.distributed as dist

    from archiver.codecs.pyramid.plan import PyramidSpec
    from archiver.codecs.pyramid.train import PyramidRecipe, train_pyramid
    from archiver.config import config_for_quality
    from archiver.model.checkpoint import Checkpointer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))  # fmt: skip
    try:
        for tag, steps in (("whole", 12), ("first", 6), ("resumed", 12)):
            cfg = config_for_quality(4, codec="pyramid", max_steps=steps, check_every=5, refine_steps=0,
                                     warm_start=False, device="cpu")  # fmt: skip
            checkpointer = Checkpointer(os.path.join(folder, "ck"), "test", every=1e9) if tag != "whole" else None
            result = train_pyramid(_images(), cfg, PyramidSpec(), checkpointer=checkpointer,
                                   recipe=PyramidRecipe(coarse_steps=4))  # fmt: skip
            assert (result.rank, result.world) == (rank, world)
            torch.save({"codec": result.codec.state_dict(), "steps": result.steps, "history": result.history},
                       os.path.join(folder, f"{tag}-{rank}.pt"))  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_ranks_keep_one_codec_and_resume_exactly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    whole, first, resumed = ([torch.load(tmp_path / f"{tag}-{r}.pt", weights_only=False) for r in range(2)]
                             for tag in ("whole", "first", "resumed"))  # fmt: skip
    for key, value in whole[0]["codec"].items():  # data parallel: one codec on every rank
        assert torch.equal(value, whole[1]["codec"][key]), key
    assert whole[0]["history"] == whole[1]["history"] and whole[0]["steps"] == 12
    assert first[0]["steps"] == 6
    assert resumed[0]["steps"] == 12 and resumed[0]["history"] == whole[0]["history"]
    for key, value in whole[0]["codec"].items():
        assert torch.equal(value, resumed[0]["codec"][key]), key
    saved = torch.load(tmp_path / "ck" / "train.pt", weights_only=False)  # the last save: step 12
    assert saved["world"] == 2 and len(saved["rank_rngs"]) == 2
    assert saved["rank_rngs"][0][0] != saved["rank_rngs"][1][0]  # every rank draws its own crops
    from archiver.codecs.pyramid.plan import PyramidSpec
    from archiver.codecs.pyramid.train import train_pyramid
    from archiver.config import config_for_quality
    from archiver.errors import InputError
    from archiver.model.checkpoint import Checkpointer

    cfg = config_for_quality(4, codec="pyramid", max_steps=14, refine_steps=0, warm_start=False, device="cpu")
    with pytest.raises(InputError, match="same number of processes"):  # one process cannot go on with it
        train_pyramid(_images(), cfg, PyramidSpec(), checkpointer=Checkpointer(tmp_path / "ck", "test"))


# --- --resume after a kill --------------------------------------------------------------------


def test_resume_after_a_kill_gives_the_uninterrupted_model(tmp_path):
    """A pack killed mid-training and packed again with --resume ends with the decoder and training
    history of a pack that was never interrupted (the refinement is timed, so latents may differ)."""
    src = write_images(tmp_path / "src", 3, 64, 48)
    extra = ("--max-steps", "40", "--refine", "0", "--checkpoint-every", "0.001s")
    whole = tmp_path / "whole.nca"
    subprocess.run(_pack_cmd(src, whole, *extra), check=True, timeout=300, env=ENV, capture_output=True)
    out = tmp_path / "a.nca"
    ckpt = tmp_path / ".a.nca.resume" / "train.pt"
    proc = subprocess.Popen(_pack_cmd(src, out, *extra), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ckpt.exists() and torch.load(ckpt, weights_only=False)["state"]["step"] >= 12:
                break
        except Exception:  # replaced while reading
            pass
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    step = torch.load(ckpt, weights_only=False)["state"]["step"]
    assert 12 <= step < 40
    resumed = subprocess.run(_pack_cmd(src, out, *extra, "--resume"), timeout=300, env=ENV, capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with ArchiveReader(whole) as a, ArchiveReader(out) as b:
        assert b.training["steps"] == a.training["steps"] == 40
        assert b.training["history"] == a.training["history"]
        for name, array in a.model_arrays().items():
            assert np.array_equal(b.model_arrays()[name], array), name
    assert not ckpt.parent.exists()
    assert verify(out, decode=True).ok


# --- append and --appendable --------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The same collection packed as usual and ``--appendable``; a folder of new images."""
    root = tmp_path_factory.mktemp("pyr-append")
    src = write_images(root / "src", 3, 64, 48)
    more = write_images(root / "more", 2, 56, 40, seed=7)
    archives = {}
    for name, flags in (("plain", []), ("appendable", ["--appendable"])):
        archives[name] = root / f"{name}.nca"
        run("pack", src, "-o", archives[name], *PYRAMID, "--max-steps", "30", "--refine", "3", *flags)
    return root, archives, more


def _append_and_check(archive, more, tmp_path, *flags) -> dict:
    """``archiver append`` ARCHIVE MORE (new names), then verify --decode; the old images keep their
    pixels; returns the archive's training summary."""
    target = tmp_path / archive.name
    shutil.copy(archive, target)
    with open_archive(archive) as a:
        before = {n: a.read(n) for n in a.image_names()}
    added = tmp_path / "added"
    added.mkdir()
    for p in more.iterdir():
        shutil.copy(p, added / f"new-{p.name}")
    run("append", target, added, "--quiet", *flags)
    run("verify", target, "--decode")
    with open_archive(target) as a:
        for name, pixels in before.items():
            assert np.array_equal(a.read(name), pixels), name
        for p in more.iterdir():
            new = a.read(f"new-{p.name}")
            original = np.asarray(Image.open(p).convert("RGB"))
            mse = np.mean((new.astype(float) - original) ** 2)
            assert 10 * np.log10(255**2 / mse) > 15.0, p.name
    with ArchiveReader(target) as r:
        return {"training": r.training, "has_encoder": r.has_encoder}


def test_append_to_a_default_pyramid_archive(packed, tmp_path):
    _, archives, more = packed
    done = _append_and_check(archives["plain"], more, tmp_path, "--steps", "10")
    assert done["training"]["appends"][-1]["method"] == "base-encoder"
    assert not done["has_encoder"]


def test_appendable_stores_the_encoder_and_append_starts_from_it(packed, tmp_path):
    _, archives, more = packed
    info = archive_info(archives["appendable"])
    assert info["appendable"] and not archive_info(archives["plain"])["appendable"]
    with ArchiveReader(archives["appendable"]) as a, ArchiveReader(archives["plain"]) as b:
        assert a.has_encoder and a.training["appendable"]["encoder_bytes"] > 0
        for name, array in b.model_arrays().items():  # the rest of the model is the same
            assert np.array_equal(a.model_arrays()[name], array), name
    done = _append_and_check(archives["appendable"], more, tmp_path)
    assert done["training"]["appends"][-1]["method"] == "encoder"
    assert done["training"]["appends"][-1]["search_steps"] == 30
    assert done["has_encoder"]  # still appendable
    (tmp_path / "zero").mkdir()  # --steps 0: the stored encoder's grids as they are
    again = _append_and_check(archives["appendable"], more, tmp_path / "zero", "--steps", "0")
    assert again["training"]["appends"][-1]["method"] == "encoder"
