"""``info``, ``list`` and ``verify``: reading an archive without extracting it."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from .architecture import decoder_macs_per_pixel
from .collection.images import pixel_crc32
from .config import ModelConfig
from .container.digest import check_file_digest
from .container.format import EntryKind, read_text
from .container.reader import ArchiveReader
from .decode import ArchiveDecoder
from .errors import ArchiverError
from .progress import ProgressCallback, emit

__all__ = ["archive_info", "list_entries", "verify", "VerifyReport"]


def archive_info(path: Path) -> dict:
    """Totals, byte breakdown, ratios, training summary and config of an archive (JSON-able)."""
    path = Path(path)
    with ArchiveReader(path) as reader:
        summary, training = reader.summary, reader.training
        archive_bytes = path.stat().st_size
        model_bytes = reader.stored_bytes("model") if "model" in reader._file else 0
        latent_bytes = int(summary.get("latent_bytes", 0))
        pixels = int(summary.get("pixels", 0))
        input_bytes = int(summary.get("input_bytes", 0))
        images = [e for e in reader.entries if e.kind is EntryKind.IMAGE]
        image_input = sum(e.size for e in images)
        return {
            "path": str(path),
            "format_version": reader.format_version,
            "archiver_version": read_text(reader._file.attrs.get("archiver_version", "")),
            "created_utc": read_text(reader._file.attrs.get("created_utc", "")),
            "images": len(images),
            "files": sum(e.kind is EntryKind.FILE for e in reader.entries),
            "folders": sum(e.kind is EntryKind.DIRECTORY for e in reader.entries),
            "symlinks": sum(e.kind is EntryKind.SYMLINK for e in reader.entries),
            "pixels": pixels,
            "archive_bytes": archive_bytes,
            "model_bytes": model_bytes,
            "latent_bytes": latent_bytes,
            "other_bytes": archive_bytes - model_bytes - latent_bytes,
            "input_bytes": input_bytes,
            "image_input_bytes": image_input,
            "ratio": input_bytes / archive_bytes if archive_bytes else math.nan,
            "bpp": archive_bytes * 8 / pixels if pixels else math.nan,
            "latent_bpp": latent_bytes * 8 / pixels if pixels else math.nan,
            "mean_psnr": summary.get("mean_psnr"),
            "train_seconds": training.get("train_seconds"),
            "steps": training.get("steps"),
            "stop_reason": training.get("stop_reason"),
            "device": training.get("device"),
            "denoiser": training.get("denoiser"),
            "gan": training.get("gan"),
            "appendable": bool(reader.config.get("appendable", False)),
            # S<s>K<k> context tables (see archiver.codec.context), or "channel" (version 1)
            "entropy_model": (training.get("entropy_model") or {}).get("chosen", "channel"),
            "warm_start": (training.get("warm_start") or {}).get("name"),
            "pack_seconds": summary.get("pack_seconds"),
            "decoder_macs_per_pixel": decoder_macs_per_pixel(ModelConfig.from_dict(reader.config.get("model", {}))),
            "config": reader.config,
        }


def list_entries(path: Path) -> list[dict]:
    """One row per entry: name, kind, size WxH, mode, record bytes, bpp, PSNR, note."""
    with ArchiveReader(Path(path)) as reader:
        rows = []
        for e in reader.entries:
            image = e.kind is EntryKind.IMAGE
            rows.append(
                {
                    "name": e.display,
                    "kind": e.kind.name.lower(),
                    "size": f"{e.width}x{e.height}" if image else "",
                    "mode": e.mode.name if image else "",
                    "format": e.format,
                    "bytes": e.length,
                    "original_bytes": e.size,
                    "bpp": e.length * 8 / e.pixels if image and e.pixels else None,
                    "psnr": e.psnr if image else None,
                    "note": e.note,
                }
            )
        return rows


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok`` is False if any problem was found."""

    checked: int = 0
    decoded: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: Path, decode: bool = False, provider: str = "cpu", progress: ProgressCallback | None = None
) -> VerifyReport:
    """Check every record checksum, the model blob, the originals' hashes of byte-exact files and, with
    ``decode``, decode every image and compare its PSNR with the one stored at pack time.

    Problems with entries are collected, not raised; an archive that cannot be opened raises. Pack
    measures pixels on ONNX Runtime's CPU provider, so ``provider`` defaults to ``cpu``.
    """
    report = VerifyReport()
    dctx = zstandard.ZstdDecompressor()
    intact = check_file_digest(path) if Path(path).is_file() else None  # a missing file: the reader says so
    if intact is False:
        # Not parsed further: HDF5 may hang on damaged structures (see ArchiveReader).
        report.problems.append("file checksum mismatch: some byte of the archive has changed")
        return report
    with ArchiveReader(Path(path)) as reader:
        if intact is None:
            report.problems.append("the file checksum in the archive's first 512 bytes is missing")
        has_images = any(e.kind is EntryKind.IMAGE for e in reader.entries)
        if has_images:
            try:
                reader.model_arrays()
                reader.onnx_graph()
                reader.tables()
                if reader.has_denoiser:
                    reader.model_arrays("denoiser")
                    reader.onnx_graph("denoiser_onnx")
                if reader.has_encoder:
                    reader.model_arrays("encoder")
            except ArchiverError as exc:
                report.problems.append(str(exc))
        decoder = ArchiveDecoder(reader, provider)
        for n, entry in enumerate(reader.entries, 1):
            report.checked += 1
            try:
                record = reader.read_record(entry)
                if entry.kind is EntryKind.FILE:
                    data = dctx.decompress(record, max_output_size=max(entry.size, 1))
                    if hashlib.sha256(data).digest() != entry.source_sha256:
                        report.problems.append(f"{entry.display}: content differs from the original's hash")
                elif entry.kind is EntryKind.IMAGE and decode:
                    image, _ = decoder.image(entry)
                    report.decoded += 1
                    if pixel_crc32(image) != entry.pixel_crc32:
                        report.problems.append(
                            f"{entry.display}: decoded pixels differ from those measured at pack time "
                            f"({entry.psnr:.2f} dB); this decoder does not reproduce the archive exactly"
                        )
            except (ArchiverError, zstandard.ZstdError) as exc:
                report.problems.append(f"{entry.display}: {exc}")
            emit(progress, "verify", n, len(reader.entries))
    return report
