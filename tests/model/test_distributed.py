"""Two CPU processes under torchrun (gloo) train one codec; rank 0 writes the archive."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archiver.container.reader import ArchiveReader
from archiver.inspect import archive_info, verify
from conftest import write_images


def test_torchrun_two_processes(tmp_path):
    src = write_images(tmp_path / "src", 3, 64, 48)
    out = tmp_path / "a.nca"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "archiver", "pack", str(src), "-o", str(out), "--max-steps", "40", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("images coded") == 1  # only rank 0 reports
    info = archive_info(out)
    assert info["images"] == 3 and info["steps"] == 40
    with ArchiveReader(out) as r:
        assert r.training["processes"] == 2
    assert verify(out, decode=True).ok


def _torchrun(src, out, *extra, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "archiver", "pack", str(src), "-o", str(out), "--max-steps", "150", "--codec", "autoencoder", "--quiet", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find torchrun's workers")
def test_torchrun_resume_continues_exactly(tmp_path):
    """Two processes killed mid-training, resumed with --resume: the same decoder as without the kill."""
    import signal
    import time

    import torch

    src = write_images(tmp_path / "src", 3, 64, 48)
    whole = tmp_path / "whole.nca"
    assert _torchrun(src, whole).wait(timeout=300) == 0
    out = tmp_path / "a.nca"
    ckpt = tmp_path / ".a.nca.resume" / "train.pt"
    proc = _torchrun(src, out, "--checkpoint-every", "0.001s")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if torch.load(ckpt, weights_only=False)["step"] >= 40:
                    break
            except Exception:  # replaced while reading
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    for pid in [proc.pid, *_descendants(proc.pid)]:  # torchrun starts its workers in their own groups
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    time.sleep(0.5)
    assert not out.exists()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 40 <= step < 150
    resumed = _torchrun(src, out, "--checkpoint-every", "0.001s", "--resume")
    assert resumed.wait(timeout=300) == 0, [line for line in resumed.stderr.read().splitlines() if "error" in line]
    with ArchiveReader(whole) as a, ArchiveReader(out) as b:
        assert b.training["steps"] == a.training["steps"] == 150
        assert b.training["history"] == a.training["history"]
        for name, array in a.model_arrays().items():
            assert (b.model_arrays()[name] == array).all(), name
    assert not ckpt.parent.exists()
