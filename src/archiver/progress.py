"""Progress events the library emits; the CLI renders them (the library never prints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["ProgressEvent", "ProgressCallback", "emit"]


@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` ("scan", "train", "anneal", "encode", "write", "extract", "verify"), ``done`` of ``total`` units."""

    stage: str
    done: int
    total: int
    detail: Any = None


ProgressCallback = Callable[[ProgressEvent], None]


def emit(callback: ProgressCallback | None, stage: str, done: int, total: int, detail: Any = None) -> None:
    """Call ``callback`` if there is one."""
    if callback is not None:
        callback(ProgressEvent(stage, done, total, detail))
