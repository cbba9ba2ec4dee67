"""Walking the input folder into a sorted list of entries (folders, files, symlinks)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..container.format import EntryKind
from ..errors import InputError

__all__ = ["ScanItem", "scan_tree", "check_output_outside"]


@dataclass(frozen=True)
class ScanItem:
    """One thing found under the input root."""

    rel: bytes  #: relative POSIX path, raw bytes
    path: Path  #: absolute path on disk
    kind: EntryKind
    stat: os.stat_result


def check_output_outside(root: Path, output: Path) -> None:
    """Refuse an output path inside the input folder (it would archive itself)."""
    root_r, out_r = root.resolve(), output.resolve()
    if out_r == root_r or root_r in out_r.parents:
        raise InputError(f"output {output} is inside the input folder {root}; write it elsewhere")


def scan_tree(root: Path) -> list[ScanItem]:
    """All folders, regular files and symlinks under ``root``, sorted by path. Symlinks are not followed.

    Raises :class:`InputError` if ``root`` is not a folder, a subfolder cannot be listed, or the tree
    holds no file at all.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    items: list[ScanItem] = []

    def on_error(exc: OSError) -> None:
        raise InputError(f"{exc.filename}: cannot list folder ({exc.strerror})")

    root_b = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root_b, onerror=on_error, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root_b).replace(os.sep.encode(), b"/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                kind = EntryKind.SYMLINK
            elif stat.S_ISDIR(st.st_mode):
                kind = EntryKind.DIRECTORY
            elif stat.S_ISREG(st.st_mode):
                kind = EntryKind.FILE
            else:
                continue  # sockets, FIFOs, devices: not data
            items.append(ScanItem(rel, Path(os.fsdecode(full)), kind, st))
    items.sort(key=lambda item: item.rel)
    if not any(item.kind is not EntryKind.DIRECTORY for item in items):
        raise InputError(f"{root} contains no files")
    return items
