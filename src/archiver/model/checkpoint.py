"""Training checkpoints in a sidecar folder, so that ``pack --resume`` continues after a crash or kill."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from ..errors import InputError

__all__ = ["Checkpointer"]


class Checkpointer:
    """Saves the whole training state every ``every`` seconds (atomically: temporary file + rename).

    ``fingerprint`` identifies the input and configuration; a checkpoint made for other ones is
    refused on resume rather than silently mixed in. With ``resume`` False nothing is ever loaded.
    """

    FILE = "train.pt"

    def __init__(self, folder: Path, fingerprint: str, every: float = 180.0, resume: bool = True) -> None:
        self.folder = Path(folder)
        self.resume = resume  # False: never load (a fresh pack must not pick up a stale checkpoint)
        self.fingerprint = fingerprint
        self.every = every
        self._last = time.monotonic()
        self.saves = 0

    def due(self) -> bool:
        """True when ``every`` seconds have passed since the last save (or since start)."""
        return time.monotonic() - self._last >= self.every

    def save(self, state: dict) -> None:
        """Write ``state`` (plus the fingerprint) as the current checkpoint."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (self.FILE + ".tmp")
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.folder / self.FILE)
        self._last = time.monotonic()
        self.saves += 1

    def load(self) -> dict | None:
        """The saved state, None if there is none; :class:`InputError` if it belongs to another pack."""
        path = self.folder / self.FILE
        if not self.resume or not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a checkpoint cut short by a kill during save
            raise InputError(f"{path}: checkpoint cannot be read ({exc}); pack again without --resume") from None
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"{path}: checkpoint was made for another input folder or other options; "
                "pack again without --resume"
            )
        return state

    def remove(self) -> None:
        """Delete the sidecar folder (after the archive is complete, or to start afresh)."""
        shutil.rmtree(self.folder, ignore_errors=True)
