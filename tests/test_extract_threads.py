"""extract's writer threads yield the cores to decoding, and only they do."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from archiver import extract as extract_module


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_writer_threads_run_nicer_and_leave_the_rest_of_the_process_alone():
    before = os.getpriority(os.PRIO_PROCESS, 0)  # on Linux: this (the main) thread's
    seen: dict[str, int] = {}

    def writer() -> None:
        extract_module._yield_to_decoding()
        seen["writer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    other = threading.Thread(target=lambda: seen.setdefault("other", os.getpriority(os.PRIO_PROCESS, 0)))
    other.start()
    other.join()
    assert seen["writer"] == min(before + extract_module.WRITER_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the main thread keeps its priority
    assert seen["other"] == before  # … and so do threads started after


def test_extract_lowers_the_priority_of_its_writer_threads_only(tmp_path, monkeypatch):
    """extract calls the priority drop once per writer thread, in the thread that writes files,
    never in the thread that decodes, and still writes every image."""
    calls: list[str] = []
    monkeypatch.setattr(extract_module, "_yield_to_decoding", lambda: calls.append(threading.current_thread().name))
    golden = Path(__file__).resolve().parent / "golden" / "v3-pyramid-wavefront-delta-graph-mixed.nca"
    report = extract_module.extract(golden, tmp_path / "out")
    assert report.images > 0
    assert len(calls) == extract_module.WRITERS and all(name.startswith("write") for name in calls), calls
