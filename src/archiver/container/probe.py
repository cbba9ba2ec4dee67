"""Salvage probe: a damaged archive is first read in a child process with a time and memory limit.

Fuzzing showed that a damaged HDF5 structure (not our records: HDF5's own object headers and
B-trees) can make the HDF5 library spin forever or allocate without bound. An intact archive never
reaches HDF5 before its whole-file SHA-256 has been checked (see ``ArchiveReader``), but
``extract --keep-going`` deliberately opens a damaged one to salvage its intact entries. Before this
process trusts HDF5 with it, a child process performs every read the salvage will perform (header,
index, model, tables, every record); reads are deterministic, so if the child finishes, the parent
will too. If the child hangs past the time limit, exceeds the memory limit or crashes, the archive
is refused as damaged beyond salvage instead of hanging the caller.

    python -m archiver.container.probe ARCHIVE   (exit 0: every read finished)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import ArchiverError, CorruptArchiveError

__all__ = ["PROBE_MIN_SECONDS", "PROBE_BYTES_PER_SECOND", "PROBE_MEMORY_BYTES", "probe_damaged"]

#: The child gets at least this long (seconds): Python start-up plus imports take ~1-2 s here.
PROBE_MIN_SECONDS = 60.0
#: ... plus one second per this many bytes of archive (a slow disk reads ~20 MB/s).
PROBE_BYTES_PER_SECOND = 20_000_000
#: Address-space limit of the child (bytes). A salvage holds one record and the model at a time;
#: 4 GiB is far beyond what an intact archive needs and stops a damaged size field from exhausting RAM.
PROBE_MEMORY_BYTES = 4 << 30


def _command(path: Path) -> list[str]:
    return [sys.executable, "-m", "archiver.container.probe", str(path)]


def _limit_memory() -> None:  # runs in the child, before exec (POSIX only)
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (PROBE_MEMORY_BYTES, PROBE_MEMORY_BYTES))


def probe_damaged(path: Path, timeout: float | None = None) -> None:
    """Read every part of the damaged archive ``path`` in a child process; raise
    :class:`CorruptArchiveError` if that does not finish within ``timeout`` seconds (default from the
    file size), runs out of memory or crashes."""
    path = Path(path)
    if timeout is None:
        timeout = PROBE_MIN_SECONDS + path.stat().st_size / PROBE_BYTES_PER_SECOND
    import archiver

    env = dict(os.environ)
    # The child must import this same package, installed or not.
    package_root = str(Path(archiver.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    try:
        result = subprocess.run(
            _command(path), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=timeout, preexec_fn=_limit_memory if os.name == "posix" else None,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CorruptArchiveError(
            f"{path}: damaged beyond salvage: its HDF5 structure could not be read within {timeout:.0f} s "
            "(the damage is in the container's own metadata)"
        ) from None
    if result.returncode != 0:
        last = (result.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise CorruptArchiveError(
            f"{path}: damaged beyond salvage: reading its HDF5 structure failed (exit {result.returncode}: {last})"
        )


def _read_everything(path: Path) -> None:
    """Every read a salvage performs; archive errors are expected (the archive is damaged) and the
    parent will meet and report them itself. Only hangs, crashes and memory exhaustion matter here."""
    from .reader import ArchiveReader

    try:
        reader = ArchiveReader(path, allow_damaged=True, probe=False)
    except ArchiverError:
        return
    with reader:
        for step in (
            lambda: reader.model_arrays("decoder"),
            lambda: reader.codec.graph(),
            reader.tables,
            lambda: reader.has_denoiser and (reader.model_arrays("denoiser"), reader.onnx_graph("denoiser_onnx")),
        ):
            try:
                step()
            except ArchiverError:
                pass
        for entry in reader.entries:
            try:
                reader.read_record(entry)
            except ArchiverError:
                pass


if __name__ == "__main__":
    _read_everything(Path(sys.argv[1]))
