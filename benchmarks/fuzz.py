"""Longer fuzzing of the archive reader than the test suite's bounded run.

    python benchmarks/fuzz.py [--seconds 120] [--archive tests/golden/v1-mixed.nca]

Mutates the archive (1–8 random byte flips, or a truncation, or a block of random bytes) and checks
that ``verify`` reports the damage or raises an ``ArchiverError``, and that ``extract --keep-going``
never raises anything else, hangs or leaves a partial file. Writes ``benchmarks/results/fuzz.json``
with how many inputs were tried and what was found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def mutate(raw: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    data = bytearray(raw)
    kind = rng.integers(3)
    if kind == 0:
        n = int(rng.integers(1, 9))
        for pos in rng.integers(0, len(data), n):
            data[pos] ^= int(rng.integers(1, 256))
        return bytes(data), f"flip x{n}"
    if kind == 1:
        cut = int(rng.integers(0, len(data)))
        return bytes(data[:cut]), f"truncate at {cut}"
    start = int(rng.integers(0, len(data)))
    size = int(rng.integers(1, 64))
    data[start : start + size] = rng.integers(0, 256, min(size, len(data) - start), dtype=np.uint8).tobytes()
    return bytes(data), f"random block {start}+{size}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--archive", type=Path, default=REPO / "tests" / "golden" / "v1-mixed.nca")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    from archiver.errors import ArchiverError
    from archiver.extract import extract
    from archiver.inspect import verify

    from benchmarks.rd import git_commit, machine

    rng = np.random.default_rng(args.seed)
    raw = args.archive.read_bytes()
    tried, detected, undetected, crashes = 0, 0, [], []
    end = time.monotonic() + args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.nca"
        while time.monotonic() < end:
            data, how = mutate(raw, rng)
            if data == raw:
                continue
            path.write_bytes(data)
            tried += 1
            try:
                try:
                    ok = verify(path, decode=True).ok
                except ArchiverError:
                    ok = False
                detected += not ok
                if ok:
                    undetected.append(how)
                out = Path(tmp) / f"o{tried}"
                try:
                    extract(path, out, keep_going=True)
                except ArchiverError:
                    pass
                if list(out.rglob("*.partial")):
                    crashes.append({"input": how, "error": "partial file left"})
            except Exception as exc:  # anything else is a bug
                crashes.append({"input": how, "error": f"{type(exc).__name__}: {exc}",
                                "trace": traceback.format_exc(limit=3)})  # fmt: skip
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "machine": machine(), "archive": str(args.archive.resolve().relative_to(REPO)), "seconds": args.seconds,
        "inputs_tried": tried, "damage_detected": detected, "undetected": undetected, "crashes": crashes,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 1 if crashes or undetected else 0


if __name__ == "__main__":
    sys.exit(main())
