"""Pack's latents and bitstreams on disk, one file each, so that memory holds one image's at a time.

Latents are written as images are coded; once the tables are counted, :meth:`LatentSpool.encode_all`
range-codes each into its bitstream. The spool then serves the bitstreams by image key (a mapping),
and the latents again for the denoiser's measurement. It lives in a folder the caller names (pack
uses its ``.<archive>.resume/spool``, removed with it when the archive is complete).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from .entropy import LatentCoder

__all__ = ["LatentSpool"]


class LatentSpool(Mapping):
    """Integer latents, then bitstreams, keyed by image number (the entry's index)."""

    def __init__(self, folder: Path, create: bool = True) -> None:
        self.folder = Path(folder)
        if create:  # else another process (torchrun's rank 0) made it
            shutil.rmtree(self.folder, ignore_errors=True)  # a stale one from an interrupted pack
            self.folder.mkdir(parents=True)
        self._keys: list[int] = []
        self.lengths: dict[int, int] = {}  #: bitstream bytes per key, after :meth:`encode_all`

    def put(self, key: int, latent: np.ndarray) -> None:
        np.save(self.folder / f"{key}.npy", latent, allow_pickle=False)
        self._keys.append(key)

    def adopt(self, keys: list[int]) -> None:
        """Take ``keys`` as this spool's latents, in that order (put by other processes)."""
        self._keys = list(keys)

    def latent(self, key: int) -> np.ndarray:
        return np.load(self.folder / f"{key}.npy", allow_pickle=False)

    def encode_all(self, coder: LatentCoder) -> None:
        """Range-code every latent with ``coder`` (the collection's tables)."""
        for key in self._keys:
            data = coder.encode(self.latent(key))
            (self.folder / f"{key}.bin").write_bytes(data)
            self.lengths[key] = len(data)

    def __getitem__(self, key: int) -> bytes:
        if key not in self.lengths:
            raise KeyError(key)
        return (self.folder / f"{key}.bin").read_bytes()

    def __iter__(self) -> Iterator[int]:
        return iter(self.lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
