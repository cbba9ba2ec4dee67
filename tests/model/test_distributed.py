"""Two CPU processes under torchrun (gloo) train one codec; rank 0 writes the archive."""

from __future__ import annotations

import os
import subprocess
import sys

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
