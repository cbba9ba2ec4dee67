"""``append``: code new images into an existing archive with its stored decoder, without retraining.

The archive's codec (:func:`archiver.codecs.codec`, its ``code_new``) writes its model into the new
archive and codes the new images with it; how it starts each latent (a stored encoder, a shipped one,
or a search) is its own. Their quality is measured through the same ONNX Runtime path as ``extract`` (denoiser included when
the archive has one), exactly like pack does. The archive is
rewritten next to itself and renamed into place only when complete: an interrupted append leaves the
old archive untouched.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codecs import codec
from .collection.images import SourceImage
from .collection.scan import check_output_outside, scan_tree
from .config import PackConfig
from .container.format import EntryKind
from .container.reader import ArchiveReader
from .container.writer import ArchiveWriter
from .errors import InputError, NotAnArchiveError
from .pack import CodedImages, PackReport, _classify, _import_training
from .pack_write import write_items
from .progress import ProgressCallback, emit

__all__ = ["AppendReport", "append"]

@dataclass
class AppendReport(PackReport):
    """What append added (counts, bytes and quality of the new entries) beside the archive's own images.

    ``archive_mean_psnr`` and ``archive_latent_bpp`` are the images already in the archive (coded with
    the encoder trained on them), so the two can be compared: that difference is what appending
    costs against a repack of the whole collection, to a first approximation.
    """

    archive_bytes_before: int = 0
    #: how the codec started each new latent (its ``code_new``): e.g. "encoder" (a stored encoder),
    #: "warm-encoder" / "base-encoder" (a shipped start) or "search"
    method: str = ""
    steps: int = 0
    archive_mean_psnr: float = math.nan
    archive_latent_bpp: float = math.nan

    @property
    def latent_bpp(self) -> float:
        """Latent bits per pixel of the appended images."""
        return self.latent_bytes * 8 / self.pixels if self.pixels else math.nan


def _check_names(reader: ArchiveReader, source: Path, items) -> list:
    """Items to add: existing folders merge; any other name already in the archive is an error."""
    existing = {e.path: e.kind for e in reader.entries}
    keep = []
    for item in items:
        kind = existing.get(item.rel)
        if kind is EntryKind.DIRECTORY and item.kind is EntryKind.DIRECTORY:
            continue
        if kind is not None:
            raise InputError(f"{item.path}: {item.rel.decode(errors='replace')!r} is already in {reader.path}")
        parts = item.rel.split(b"/")
        for k in range(1, len(parts)):
            parent = existing.get(b"/".join(parts[:k]))
            if parent is not None and parent is not EntryKind.DIRECTORY:
                raise InputError(f"{item.path}: would go inside {b'/'.join(parts[:k]).decode(errors='replace')!r}, "
                                 f"which is not a folder in {reader.path}")  # fmt: skip
        keep.append(item)
    return keep


def append(
    archive: Path,
    source: Path,
    *,
    steps: int | None = None,
    strict: bool = False,
    progress: ProgressCallback | None = None,
    use_encoder: bool = True,
) -> AppendReport:
    """Add the files under ``source`` to ``archive`` (names relative to ``source``, at the archive's root).

    ``steps``: latent optimisation steps per new image (None: the codec's default for how it starts;
    0 keeps an encoder's latent as it is). ``use_encoder=False`` searches from nothing even when there
    is an encoder (to measure what an encoder buys).
    """
    started = time.monotonic()
    _import_training()
    archive, source = Path(archive), Path(source)
    if steps is not None and steps < 0:
        raise InputError(f"--steps must be 0 or more, got {steps}")
    if not archive.is_file():
        raise NotAnArchiveError(f"{archive}: no such archive file")
    check_output_outside(source, archive)
    # The writer spools every record, so the old archive can be closed before the new file replaces
    # it (Windows cannot rename over an open file); any error removes the temporary file.
    with ArchiveWriter(archive) as writer:
        with ArchiveReader(archive) as reader:
            report = _append_into(writer, reader, source, steps, strict, progress, use_encoder)
        report.archive_bytes = writer.commit()
    report.seconds = time.monotonic() - started
    return report


def _append_into(
    writer: ArchiveWriter, reader: ArchiveReader, source: Path, steps: int | None, strict: bool,
    progress: ProgressCallback | None, use_encoder: bool,
) -> AppendReport:  # fmt: skip
    archive = reader.path
    cfg = PackConfig.from_dict(reader.config)
    items = _check_names(reader, source, scan_tree(source))
    classes = _classify(items, progress, strict)
    images = {i: c for i, c in classes.items() if isinstance(c, SourceImage)}
    old_images = [e for e in reader.entries if e.kind is EntryKind.IMAGE]
    if images and not old_images:
        raise InputError(f"{archive}: holds no trained decoder (it has no images); pack the images instead")
    method, steps, coded = codec(reader.codec.desc.name).code_new(writer, reader, cfg, images, steps, use_encoder, progress)
    summary = dict(reader.summary)
    report = AppendReport(
        archive=archive, archive_bytes=0, input_bytes=0, images=len(images), files=0, folders=0, symlinks=0,
        pixels=sum(im.width * im.height for im in images.values()), latent_bytes=0,
        mean_psnr=float(np.mean(list(coded.psnrs.values()))) if coded.psnrs else math.nan,
        seconds=0.0, training={}, archive_bytes_before=archive.stat().st_size, method=method, steps=steps,
        archive_mean_psnr=float(np.mean([e.psnr for e in old_images])) if old_images else math.nan,
        archive_latent_bpp=8 * summary.get("latent_bytes", 0) / summary["pixels"] if summary.get("pixels") else math.nan,
    )  # fmt: skip
    _copy_entries(writer, reader)
    write_items(writer, items, classes, coded, cfg.zstd_level, report, progress)
    report.latent_bytes = sum(len(b) for b in coded.bitstreams.values())  # the new images, coded alone
    _update_documents(writer, reader, report, old_images, coded, method, steps)
    return report


def _copy_entries(writer: ArchiveWriter, reader: ArchiveReader) -> None:
    """The archive's own entries: records copied as they are (CRC checked); images by their integer
    latents, which the writer codes again in groups (bit-exact pixels)."""
    for entry in reader.entries:
        if entry.kind is EntryKind.IMAGE:
            latent, record = reader.read_image(entry)
            group = None
            if entry.block >= 0:  # version 3: the group stays whole, with its pixel check
                group = entry.block
                writer.keep_group(group, reader.blocks[group].pixel_crc32, len(reader.group_members(entry)))
            writer.add_image(entry, latent, record.info, record.blobs, group=group, gain=record.gain, codec=record.codec)
        else:
            writer.add(entry, reader.read_record(entry))


def _update_documents(writer: ArchiveWriter, reader: ArchiveReader, report: AppendReport, old_images: list,
                      coded: CodedImages, method: str, steps: int) -> None:  # fmt: skip
    """config unchanged; training with this append logged; summary with the new totals."""
    training = dict(reader.training)
    training["appends"] = [*training.get("appends", []), {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images": report.images, "files": report.files, "method": method, "search_steps": steps,
        "mean_psnr": None if math.isnan(report.mean_psnr) else report.mean_psnr,
        "latent_bytes": report.latent_bytes, "pixels": report.pixels,
    }]  # fmt: skip
    psnrs = [e.psnr for e in old_images] + list(coded.psnrs.values())
    summary = dict(reader.summary)
    summary.update(
        images=summary.get("images", 0) + report.images, files=summary.get("files", 0) + report.files,
        folders=summary.get("folders", 0) + report.folders, symlinks=summary.get("symlinks", 0) + report.symlinks,
        pixels=summary.get("pixels", 0) + report.pixels, input_bytes=summary.get("input_bytes", 0) + report.input_bytes,
        latent_bytes=summary.get("latent_bytes", 0) + report.latent_bytes,  # the writer sets the exact total
        mean_psnr=float(np.mean(psnrs)) if psnrs else math.nan,
    )  # fmt: skip
    writer.set_json("config", reader.config)
    writer.set_json("training", training)
    writer.set_json("summary", summary)
    report.training = training
