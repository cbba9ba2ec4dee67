"""``extract``: archive → the original tree, images decoded, everything else byte-exact."""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .api import CLI_DAMAGED_HINT, Archive
from .collection.images import save_image
from .container.entries import Entry
from .container.format import EntryKind
from .errors import ArchiverError, CorruptArchiveError, EntryNotFoundError, InputError, OutputExistsError
from .progress import ProgressCallback, emit

__all__ = ["ExtractReport", "extract", "select_entries", "safe_target"]

#: Threads writing the decoded images' files, and how much nicer (lower priority) they run than
#: the decoding threads. Decoding is a chain (the entropy thread, then the runtime) that every
#: image waits on; a file can be written any time before the end. With both at the same priority
#: on 2 cores, the entropy thread got a share of a core, not a core. Fresh extracts of a 48-photo
#: album (default codec of 2026-12, 2 cores, five alternating runs each, median): two writers at the same
#: priority 8.15 s, one writer 10 nicer 7.34 s, one 19 nicer 7.46 s (noisy machine: each variant
#: spread over 2–2.5 s); the code before against this, alternating: 7.67 → 6.72 s and 7.87 → 6.97 s.
#: Niceness is per thread on Linux; elsewhere the writers keep the default.
WRITERS = 1
WRITER_NICENESS = 10
#: Decoded pixels that may wait for the writer (beyond the one image being written): 2 Mpx, some 6
#: MB of RGB. Bounded by pixels, not images: with four images at most, the decoding of 256² crops
#: waited for the writer after every batch (a timeline: 25–30 ms between runtime calls, 3 ms without
#: PNG writing), while four 100-Mpx images would have held 1.2 GB. Fresh extracts, alternating, on
#: a slow spell of the machine (medians): 48 crops 1.72 → 1.67 s, 48 album photos 5.93 → 5.60 s.
WRITE_AHEAD_PIXELS = 2_000_000


@dataclass
class ExtractReport:
    """What extract wrote."""

    output: Path
    images: int = 0
    files: int = 0
    folders: int = 0
    symlinks: int = 0
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  #: (entry name, why) with keep_going


def select_entries(entries: list[Entry], patterns: list[str]) -> list[Entry]:
    """Entries matching any pattern: exact name, glob (``*.png``, ``sub/*``) or a folder and its content.

    With no patterns, every entry. A pattern matching nothing is an :class:`EntryNotFoundError`.
    """
    if not patterns:
        return list(entries)
    chosen: set[int] = set()
    for pattern in patterns:
        pat = pattern.strip("/")
        hits = {
            i
            for i, e in enumerate(entries)
            if e.name == pat or fnmatch.fnmatchcase(e.name, pat) or e.name.startswith(pat + "/")
        }
        if not hits:
            raise EntryNotFoundError(f"no entry matches {pattern!r}")
        chosen |= hits
    return [e for i, e in enumerate(entries) if i in chosen]


def safe_target(root: Path, entry: Entry) -> Path:
    """Where ``entry`` goes under ``root``.

    Refuses empty names, NUL bytes, absolute paths, ``..`` and ``.`` components, backslashes and
    drive letters (a Windows path in a hostile archive), and any path whose existing parent folders
    lead outside ``root`` through a symlink.
    """
    name = entry.name
    parts = name.split("/")
    bad = (
        not name
        or "\0" in name
        or "\\" in name
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or (len(parts[0]) >= 2 and parts[0][1] == ":")
    )
    if bad:
        raise CorruptArchiveError(f"entry name {name!r} would write outside the output folder")
    target = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(target.parent)
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        raise CorruptArchiveError(f"entry {name!r}: {target.parent} leads outside {root} through a symlink")
    return target


def _target_for(root: Path, entry: Entry, fmt: str | None) -> Path:
    target = safe_target(root, entry)
    if entry.kind is EntryKind.IMAGE and fmt:
        target = target.with_suffix("." + fmt.lower())
    return target


def _place(target: Path, entry: Entry, write) -> None:
    """Write a file atomically, then give it the entry's permission bits and modification time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, write)
    os.chmod(target, entry.perm & 0o7777)
    os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.partial")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def extract(
    archive: Path,
    output: Path,
    patterns: list[str] | None = None,
    *,
    force: bool = False,
    image_format: str | None = None,
    provider: str = "auto",
    threads: int | None = None,
    batch_size: int = 8,
    keep_going: bool = False,
    progress: ProgressCallback | None = None,
) -> ExtractReport:
    """Extract ``archive`` (all entries, or those matching ``patterns``) under the folder ``output``.

    Existing files are never overwritten unless ``force``; the check covers every target before
    anything is written. ``image_format`` (e.g. ``"png"``) writes images in that format instead of
    their original one. ``provider`` and ``threads`` choose ONNX Runtime's execution provider
    (:func:`archiver.runtime.session.resolve_providers`) and its intra-op thread count; images are
    decoded ``batch_size`` at a time (same latent shape per batch), the entropy decoding of the next
    batch and the writing of finished files overlapping the network run.

    A damaged entry raises :class:`CorruptArchiveError` (files written so far stay, each complete);
    with ``keep_going`` it is recorded in ``report.failed`` and every intact entry is still extracted.
    """
    fmt = image_format.upper() if image_format else None
    if fmt and fmt not in ("PNG",):
        raise InputError(f"--format {image_format!r} is not supported (use png)")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} exists and is not a folder")
    report = ExtractReport(output)
    # Images and files are read through archiver.open's handle: one decoding path for both.
    # spin=False: the runtime's workers would busy-wait on the cores the entropy and writer threads use.
    with Archive(archive, provider, threads, allow_damaged=keep_going, damaged_hint=CLI_DAMAGED_HINT, spin=False) as handle:
        reader = handle.reader
        _refuse_entries_under_links(reader.entries, archive)
        selected = select_entries(reader.entries, patterns or [])
        targets = [(e, _target_for(output, e, fmt)) for e in selected]
        if not force:
            for entry, target in targets:
                if entry.kind is not EntryKind.DIRECTORY and (target.exists() or target.is_symlink()):
                    raise OutputExistsError(f"{target} already exists (use --force to overwrite)")
        if any(e.kind is EntryKind.IMAGE for e in selected):
            reader.codec.check_decodable()  # e.g. a base codec not shipped here: fail before writing
        output.mkdir(parents=True, exist_ok=True)
        run = _Extraction(handle, report, fmt, keep_going, progress, len(targets))
        links, images = run.folders_and_files(targets)
        run.images(images, batch_size)
        # Links last, so that no file of this extraction is written through a link it created.
        run.links(links)
        # Folder times last and deepest first: writing into a folder changes its mtime.
        for entry, target in sorted(targets, key=lambda t: -len(t[0].path)):
            if entry.kind is EntryKind.DIRECTORY:
                os.chmod(target, (entry.perm & 0o7777) | 0o700)
                os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
    return report


def _yield_to_decoding() -> None:
    """Lower the calling (writer) thread's priority by :data:`WRITER_NICENESS` where the platform
    has per-thread niceness (Linux); elsewhere, or if refused, leave it."""
    if sys.platform.startswith("linux"):  # elsewhere a thread id is no process id: never renice by it
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICENESS)
        except OSError:
            pass


def _refuse_entries_under_links(entries: list[Entry], archive: Path) -> None:
    """An entry whose path runs through a symlink entry would be written wherever the link points."""
    links_at = {e.path for e in entries if e.kind is EntryKind.SYMLINK}
    for e in entries:
        parts = e.path.split(b"/")
        if any(b"/".join(parts[:k]) in links_at for k in range(1, len(parts))):
            raise CorruptArchiveError(f"{archive}: entry {e.display!r} lies inside a symlink entry")


@dataclass
class _Extraction:
    """The steps of one extraction after its checks: folders and plain files, then the images
    (decoded in batches, written by a lower-priority thread), then the links; failures recorded with
    ``keep_going``, raised otherwise."""

    handle: Archive
    report: ExtractReport
    fmt: str | None
    keep_going: bool
    progress: ProgressCallback | None
    total: int
    done: int = 0

    def _advance(self) -> None:
        self.done += 1
        emit(self.progress, "extract", self.done, self.total)

    def _failed(self, entry: Entry, exc: ArchiverError) -> None:
        if not self.keep_going:
            raise exc
        self.report.failed.append((entry.display, str(exc)))

    def folders_and_files(self, targets: list[tuple[Entry, Path]]):
        """Make the folders and write the plain files; returns (links, images) to do later, with
        their targets."""
        links: list[tuple[Entry, Path]] = []
        images: list[tuple[Entry, Path]] = []
        for entry, target in targets:
            if entry.kind is EntryKind.DIRECTORY:
                target.mkdir(parents=True, exist_ok=True)
                self.report.folders += 1
            elif entry.kind is EntryKind.SYMLINK:
                links.append((entry, target))
            elif entry.kind is EntryKind.IMAGE:
                images.append((entry, target))
                continue
            else:
                try:
                    _place(target, entry, self.handle.file_writer(entry))
                except ArchiverError as exc:
                    self._failed(entry, exc)
                    continue
                self.report.files += 1
                self.report.written.append(target)
            self._advance()
        return links, images

    def images(self, images: list[tuple[Entry, Path]], batch_size: int) -> None:
        """Decode the images ``batch_size`` at a time and write them on :data:`WRITERS` threads, at most
        :data:`WRITE_AHEAD_PIXELS` of decoded images waiting in memory."""
        where = {id(entry): target for entry, target in images}
        fmt, report = self.fmt, self.report
        with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="write", initializer=_yield_to_decoding) as writers:
            pending: deque[tuple[Future, int]] = deque()  # (write, its pixels)
            waiting = 0
            on_error = (lambda e, exc: report.failed.append((e.display, str(exc)))) if self.keep_going else None
            for entry, image, record in self.handle.decoded([e for e, _ in images], batch_size, on_error=on_error):
                target = where[id(entry)]
                save = lambda h, im=image, e=entry, r=record: save_image(im, h, fmt or e.format, r.info, r.blobs)  # noqa: E731
                pending.append((writers.submit(_place, target, entry, save), entry.width * entry.height))
                waiting += pending[-1][1]
                report.written.append(target)
                while len(pending) > 1 and waiting - pending[0][1] > WRITE_AHEAD_PIXELS:
                    future, pixels = pending.popleft()
                    future.result()
                    waiting -= pixels
                report.images += 1
                self._advance()
            for future, _ in pending:
                future.result()

    def links(self, links: list[tuple[Entry, Path]]) -> None:
        """Make the symbolic links (replacing what is at their place), with their own times."""
        for entry, target in links:
            try:
                link = self.handle.reader.read_record(entry)
            except ArchiverError as exc:
                self._failed(entry, exc)
                continue
            if target.is_symlink() or target.exists():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, os.fsencode(target))
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
            self.report.symlinks += 1
