"""archiver: a neural collection archiver.

``pack`` learns a small codec for one collection and writes one ``.nca`` archive; ``extract`` gives the
collection back. See README.md and docs/FORMAT.md.

From Python, ``archiver.open(path)`` reads an archive without writing files (:mod:`archiver.api`:
images as numpy arrays, byte-exact files as bytes) and :class:`archiver.data.ArchiveDataset` is a
PyTorch dataset over its images.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open", "Archive"]


def __getattr__(name: str):
    # Lazy (PEP 562): ``import archiver`` stays cheap for the CLI, which does not need h5py to start.
    if name in ("open", "Archive"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'archiver' has no attribute {name!r}")
