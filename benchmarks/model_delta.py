"""What storing the model as a difference from its base codec saves, on existing archives.

    python benchmarks/model_delta.py ARCHIVE.nca [...]

For each archive made from a base (``codec.base`` in ``info``): the bytes of its stored model blobs
(``decoder`` and ``entropy``, deltas) against the same fine-tuned model stored whole (the arrays the
reader rebuilds from base + delta, packed as pack would with ``--self-contained``), and the model's
share of the archive both ways. The latents and everything else are the same bytes either way, so
the whole-model archive size is exact for this model (a ``--self-contained`` pack also drops the
delta's term from the fine-tuning loss, which moves weights a little more).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from archiver.bench.compare import model_blob_bytes  # noqa: E402
from archiver.container.reader import ArchiveReader  # noqa: E402


def measure(path: Path) -> dict:
    """Model bytes stored (delta) and whole for one archive."""
    with ArchiveReader(path) as reader:
        stored, whole = model_blob_bytes(reader)
        base = reader.codec.desc.base
    size = path.stat().st_size
    return {
        "archive": str(path), "base": base, "archive_bytes": size,
        "model_blob_bytes_delta": stored, "model_blob_bytes_whole": whole,
        "share_delta": round(stored / size, 5), "share_whole": round(whole / (size - stored + whole), 5),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("archives", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for path in args.archives:
        print(json.dumps(measure(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
