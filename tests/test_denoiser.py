"""pack --denoiser: the post-filter is trained, priced, and when kept, applied identically on extract."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.container.reader import ArchiveReader
from archiver.inspect import verify
from conftest import build_mixed_tree

runner = CliRunner()


@pytest.mark.parametrize("force_keep", [False, True])
def test_pack_with_denoiser(tmp_path, monkeypatch, force_keep):
    # The verdict is forced both ways so that both paths run whatever a 2-second training gains.
    monkeypatch.setattr("archiver.model.denoiser.worth_keeping", lambda *a: force_keep)
    build_mixed_tree(tmp_path / "src")
    out = tmp_path / "d.nca"
    result = runner.invoke(app, ["pack", str(tmp_path / "src"), "-o", str(out), "--max-steps", "60", "--time-limit", "10", "--denoiser",
                                 "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "denoiser: " in result.output
    info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)
    assert info["denoiser"]["kept"] is force_keep and info["denoiser"]["steps"] > 0
    with ArchiveReader(out) as r:
        assert r.has_denoiser is force_keep
    report = verify(out, decode=True)
    assert report.ok and report.decoded == 5, report.problems
    assert runner.invoke(app, ["extract", str(out), "-o", str(tmp_path / "x"), "--quiet"]).exit_code == 0
