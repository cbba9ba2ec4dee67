"""A PyTorch dataset over an archive's images, for training straight from an ``.nca`` file.

    from torch.utils.data import DataLoader
    from archiver.data import ArchiveDataset

    dataset = ArchiveDataset("photos.nca", transform=to_tensor)   # any callable on H×W×C uint8
    loader = DataLoader(dataset, batch_size=16, shuffle=True, num_workers=4)

This is the only module of the package, besides the training code, that imports torch.

Processes: the dataset holds no open file when it is created or pickled; each process (the main
one, every DataLoader worker, forked or spawned) opens its own handle on first use, because HDF5
file handles must not cross a fork. Threads: each worker runs ONNX Runtime on one intra-op thread
by default (``threads=None`` inside a worker), so ``num_workers`` processes share the cores instead
of each starting one thread per core; in the main process ONNX Runtime uses every core.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch.utils.data

from .api import DEFAULT_BATCH_SIZE, Archive

__all__ = ["ArchiveDataset"]


class ArchiveDataset(torch.utils.data.Dataset):
    """Map-style dataset of an archive's coded images, in archive order.

    Item ``i`` is ``transform(pixels)`` (or the pixels without a transform), where pixels are the
    H×W×C uint8 array :meth:`archiver.api.Archive.read` gives for ``names[i]``; with
    ``return_name`` it is ``(names[i], item)``. Byte-exact files, including images that pack kept
    as is, are not items. ``names`` restricts the dataset to those images (in that order).

    ``provider`` defaults to ``cpu``: GPU providers do not survive in forked workers, and the
    decoded pixels are then exactly those pack measured. ``threads`` is ONNX Runtime's intra-op
    thread count (None: 1 in a DataLoader worker, every core otherwise).

    With ``batch_size`` set, a DataLoader fetches each batch through :meth:`__getitems__`, which
    decodes its images as ``extract`` does (images of one coded size in one runtime call).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Callable[[np.ndarray], Any] | None = None,
        *,
        names: Sequence[str] | None = None,
        return_name: bool = False,
        provider: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self.return_name = return_name
        self.provider = provider
        self.threads = threads
        with Archive(self.path) as archive:  # only to list (and check) the images: no handle is kept
            self.names: list[str] = [e.name for e in archive.image_entries(names)]
        self._archive: Archive | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        name = self.names[index]
        return self._item(name, self._handle().read(name))

    def __getitems__(self, indices: Sequence[int]) -> list:
        """The items at ``indices`` (a DataLoader batch), decoded together; in ``indices`` order."""
        wanted = [self.names[i] for i in indices]
        unique = list(dict.fromkeys(wanted))  # a sampler with replacement may repeat an index
        pixels = dict(self._handle().images(unique, batch_size=max(DEFAULT_BATCH_SIZE, len(unique))))
        return [self._item(name, pixels[name]) for name in wanted]

    def _item(self, name: str, pixels: np.ndarray):
        item = self.transform(pixels) if self.transform is not None else pixels
        return (name, item) if self.return_name else item

    def _handle(self) -> Archive:
        """This process's own handle, opened on first use (a forked worker never reuses its parent's)."""
        if self._archive is None or self._pid != os.getpid():
            # A handle inherited through fork is never used (HDF5 state is not fork-safe): this
            # process opens its own, with its own file descriptor. The archive is opened read-only,
            # so dropping the inherited object writes nothing.
            threads = self.threads
            if threads is None and torch.utils.data.get_worker_info() is not None:
                threads = 1
            self._archive = Archive(self.path, self.provider, threads)
            self._pid = os.getpid()
        return self._archive

    def close(self) -> None:
        """Close this process's handle (it is reopened if the dataset is used again)."""
        if self._archive is not None and self._pid == os.getpid():
            self._archive.close()
        self._archive = None

    def __getstate__(self) -> dict:
        # Pickled for spawned workers: without the handle, which each process opens itself.
        state = dict(self.__dict__)
        state["_archive"], state["_pid"] = None, -1
        return state
