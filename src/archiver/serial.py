"""Frozen dataclasses to and from plain JSON (``to_dict`` / ``from_dict``), shared by every document."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import InputError

__all__ = ["_Serializable"]


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of every field (tuples become lists)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys are an error so that typos do not pass silently."""
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - set(names)
        if unknown:
            raise InputError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        kwargs = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)
