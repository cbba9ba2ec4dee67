"""Writing a packed collection: every scanned item into an :class:`ArchiveWriter` (coded images by
their latents, byte-exact files, folders, symlinks) and the archive's documents."""

from __future__ import annotations

import hashlib
import math
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zstandard

from .collection.images import SourceImage
from .collection.scan import ScanItem
from .config import PackConfig
from .container.entries import Entry
from .container.format import EntryKind
from .container.writer import ArchiveWriter
from .errors import InputError
from .progress import ProgressCallback, emit

if TYPE_CHECKING:
    from .pack import CodedImages, PackReport

__all__ = ["write_items"]


def _base_entry(item: ScanItem) -> Entry:
    return Entry(
        path=item.rel, kind=item.kind, mtime_ns=item.stat.st_mtime_ns, perm=stat.S_IMODE(item.stat.st_mode)
    )


def _add_image(writer: ArchiveWriter, entry: Entry, image: SourceImage, coded: CodedImages, i: int) -> None:
    """One coded image: its latent and extras go to the writer's group of its shape."""
    im = image if image.resident else image.full()  # the extras need its blobs
    entry.kind = EntryKind.IMAGE
    entry.width, entry.height, entry.mode, entry.format = im.width, im.height, im.mode, im.format
    entry.psnr, entry.pixel_crc32 = coded.psnrs[i], coded.crcs[i]
    writer.add_image(entry, coded.latents(i), im.info, im.blobs, gain=coded.gains.get(i, 0),
                     codec=coded.image_codec.get(i, b""))  # fmt: skip


def write_items(
    writer: ArchiveWriter,
    items: list[ScanItem],
    classes: dict[int, SourceImage | str],
    coded: CodedImages,
    zstd_level: int,
    report: PackReport,
    progress: ProgressCallback | None = None,
) -> None:
    """Add every scanned item to ``writer``: folders, symlinks, coded images (their latent, kept
    metadata and measured quality from ``coded``; the writer codes them in groups) and byte-exact
    files; counts go into ``report`` (``latent_bytes`` once the writer has committed)."""
    compressor = zstandard.ZstdCompressor(level=zstd_level)
    for i, item in enumerate(items):
        entry = _base_entry(item)
        record = b""
        if item.kind is EntryKind.DIRECTORY:
            report.folders += 1
        elif item.kind is EntryKind.SYMLINK:
            record = os.readlink(os.fsencode(item.path))
            report.symlinks += 1
        elif isinstance(classes[i], SourceImage):
            _add_image(writer, entry, classes[i], coded, i)
            report.input_bytes += item.stat.st_size  # the entry keeps no size: the file is not restored as is
            emit(progress, "write", i + 1, len(items))
            continue
        else:
            # One read serves both the hash and the record, so they cannot disagree.
            try:
                data = item.path.read_bytes()
            except OSError as exc:
                raise InputError(f"{item.path}: cannot read ({exc.strerror or exc})") from None
            entry.source_sha256, entry.size = hashlib.sha256(data).digest(), len(data)
            entry.note = str(classes[i])
            report.files += 1
            report.stored_as_is.append((entry.display, entry.note))
            record = compressor.compress(data)
        report.input_bytes += entry.size
        writer.add(entry, record)
        emit(progress, "write", i + 1, len(items))


def _write_archive(path: Path, cfg: PackConfig, items: list[ScanItem], classes: dict, coded: CodedImages,
                   images: dict, started: float, progress: ProgressCallback | None) -> PackReport:  # fmt: skip
    """Write the archive to ``path`` (atomically); returns the report of what it holds."""
    from .pack import PackReport

    training, psnrs = coded.training, coded.psnrs
    report = PackReport(
        archive=path, archive_bytes=0, input_bytes=0, images=len(images), files=0, folders=0, symlinks=0,
        pixels=sum(im.width * im.height for im in images.values()), latent_bytes=0,
        mean_psnr=float(np.mean(list(psnrs.values()))) if psnrs else math.nan,
        seconds=0.0, training=training,
    )  # fmt: skip
    with ArchiveWriter(path) as writer:
        if coded.model_blob is not None:
            from .runtime.graph import OPSET

            writer.write_model(*coded.model_blob)
            if coded.encoder_blob is not None:
                writer.write_model(*coded.encoder_blob, name="encoder")
            if coded.codec is None or "graph" not in coded.codec.base:  # else the base ships it
                writer.write_onnx(coded.onnx_graph, OPSET, cfg.zstd_level)
            for name, graph in coded.more_graphs.items():
                writer.write_onnx(graph, OPSET, cfg.zstd_level, name=name)
            if coded.codec is not None:  # a codec with its own entropy model (archiver.codecs)
                writer.write_entropy(*coded.entropy_blob, coded.coder)  # type: ignore[misc]
                writer.set_json("codec", coded.codec.to_dict())
            else:
                writer.write_tables(coded.tables)
            pf = coded.postfilter
            if pf is not None and pf.kept:
                writer.write_denoiser(pf.blob, pf.manifest, pf.graph, OPSET, cfg.zstd_level)
        write_items(writer, items, classes, coded, cfg.zstd_level, report, progress)
        writer.set_json("config", cfg.to_dict())
        writer.set_json("training", training)
        report.seconds = time.monotonic() - started
        writer.set_json(
            "summary",
            {
                "images": report.images, "files": report.files, "folders": report.folders,
                "symlinks": report.symlinks, "pixels": report.pixels, "input_bytes": report.input_bytes,
                "latent_bytes": report.latent_bytes, "mean_psnr": report.mean_psnr,
                "pack_seconds": round(report.seconds, 3),
            },
        )  # fmt: skip
        report.archive_bytes = writer.commit()
        report.latent_bytes = writer.latent_bytes
    return report
