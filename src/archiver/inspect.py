"""``info``, ``list`` and ``verify``: reading an archive without extracting it."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from .collection.images import pixel_crc32
from .container.digest import check_file_digest
from .container.format import EntryKind
from .container.reader import ArchiveReader
from .decode import ArchiveDecoder
from .errors import ArchiverError
from .progress import ProgressCallback, emit

__all__ = ["archive_info", "byte_breakdown", "list_entries", "verify", "VerifyReport"]

#: Columns of a version-1/2 ``/entries`` by the kind of bookkeeping they are (``byte_breakdown``).
_V2_KINDS = {
    "names": ("path",),
    "checksums": ("checksum", "pixel_crc32", "source_sha256"),
    "index": ("offset", "length"),
    "metadata": ("kind", "mtime_ns", "perm", "size", "width", "height", "mode", "format", "psnr"),
}


def _v3_breakdown(reader: ArchiveReader) -> dict[str, int]:
    index = reader._index
    sections = index.section_bytes
    groups = [b for b in index.blocks if b.is_group]
    owned = {k for k in index.entry_blocks if k >= 0} | set(reader.model_blocks().values())
    return {
        "model": reader.stored_bytes("model"),
        "model_index": sections["model"],  # manifests, digests and entropy tables, in /index
        "latents": sum(b.latent_length for b in groups),
        "names": sections["names"],
        "metadata": sections["metadata"],
        "image_extras": sum(b.length - b.latent_length for b in groups),
        "shared_blobs": sum(b.length for k, b in enumerate(index.blocks) if k not in owned),
        "files": sum(b.length for k, b in enumerate(index.blocks) if k in owned and not b.is_group) - reader.stored_bytes("model"),
        "checksums": sections["checksums"],
        "index": sections["layout"] + 1 + 4 * len(sections),
        "documents": sections["documents"],
    }


def _v2_breakdown(reader: ArchiveReader) -> dict[str, int]:
    f = reader._file
    out = {"model": reader.stored_bytes("model") if "model" in f else 0, "model_index": 0}
    out["latents"] = int(reader.summary.get("latent_bytes", 0))
    for kind, names in _V2_KINDS.items():
        out[kind] = sum(reader.stored_bytes(f"entries/{n}") for n in names if f"entries/{n}" in f)
    files = sum(e.length for e in reader.entries if e.kind is not EntryKind.IMAGE)
    out["image_extras"] = reader.stored_bytes("entries/data") - files - out["latents"]  # length prefixes too
    out["shared_blobs"], out["files"] = 0, files
    out["documents"] = sum(len(f.attrs[n]) for n in ("config", "training", "summary") if n in f.attrs)
    return out


def byte_breakdown(reader: ArchiveReader, archive_bytes: int) -> dict[str, int]:
    """Where an archive's bytes go: ``model`` (weight and graph datasets), ``model_index`` (their
    manifests and the entropy tables, version 3), ``latents``, and the rest by kind: ``names``,
    ``metadata`` (times, permissions, sizes, image geometry, PSNR, notes), ``image_extras`` (per-image
    info, alpha, palettes, one zstd frame per group), ``shared_blobs`` (each distinct ICC/EXIF/XMP
    once), ``files`` (byte-exact files and links), ``checksums``, ``index`` (where each entry's bytes
    are), ``documents`` (config, training and summary JSON) and ``container`` (HDF5's own structure,
    the 512-byte user block and the root attributes: whatever is left). Version 1 and 2 archives are
    broken down by their ``/entries`` columns (compressed bytes; ``image_extras`` then includes the
    8-byte record length prefixes)."""
    out = _v3_breakdown(reader) if reader.format_version >= 3 else _v2_breakdown(reader)
    out["container"] = archive_bytes - sum(out.values())
    return out


def _macs_per_pixel(reader: ArchiveReader) -> float:
    """Multiply–accumulates per pixel of the archive's decoder (its codec's own count)."""
    return reader.codec.macs_per_pixel()


def archive_info(path: Path) -> dict:
    """Totals, byte breakdown, ratios, training summary and config of an archive (JSON-able)."""
    path = Path(path)
    with ArchiveReader(path) as reader:
        summary, training = reader.summary, reader.training
        archive_bytes = path.stat().st_size
        breakdown = byte_breakdown(reader, archive_bytes)
        model_bytes = breakdown["model"] + breakdown["model_index"]
        latent_bytes = breakdown["latents"]
        pixels = int(summary.get("pixels", 0))
        input_bytes = int(summary.get("input_bytes", 0))
        images = [e for e in reader.entries if e.kind is EntryKind.IMAGE]
        image_input = sum(e.size for e in images)
        if reader.format_version >= 3:  # version 3 keeps no per-image original size, only the total
            image_input = input_bytes - sum(e.size for e in reader.entries if e.kind is not EntryKind.IMAGE)
        return {
            "path": str(path),
            "format_version": reader.format_version,
            "archiver_version": reader.created.get("archiver_version", ""),
            "created_utc": reader.created.get("created_utc", ""),
            "images": len(images),
            "files": sum(e.kind is EntryKind.FILE for e in reader.entries),
            "folders": sum(e.kind is EntryKind.DIRECTORY for e in reader.entries),
            "symlinks": sum(e.kind is EntryKind.SYMLINK for e in reader.entries),
            "pixels": pixels,
            "archive_bytes": archive_bytes,
            "model_bytes": model_bytes,
            "latent_bytes": latent_bytes,
            "other_bytes": archive_bytes - model_bytes - latent_bytes,
            # other_bytes by kind (see byte_breakdown); model and latents are the two above
            "other_breakdown": {k: v for k, v in breakdown.items() if k not in ("model", "model_index", "latents")},
            "input_bytes": input_bytes,
            "image_input_bytes": image_input,
            "ratio": input_bytes / archive_bytes if archive_bytes else math.nan,
            "bpp": archive_bytes * 8 / pixels if pixels else math.nan,
            "latent_bpp": latent_bytes * 8 / pixels if pixels else math.nan,
            "mean_psnr": summary.get("mean_psnr"),
            "min_psnr": min((e.psnr for e in images), default=None),
            # pack --target-psnr (dB) / --max-bytes, 0 when not used; what each did is in training
            "target_psnr": reader.config.get("target_psnr", 0.0),
            "max_bytes": reader.config.get("max_bytes", 0),
            "train_seconds": training.get("train_seconds"),
            "steps": training.get("steps"),
            "stop_reason": training.get("stop_reason"),
            "device": training.get("device"),
            "processes": training.get("processes", 1),  # training processes (torchrun --nproc_per_node)
            "denoiser": training.get("denoiser"),
            "gan": training.get("gan"),
            # how --time-limit was split (limit_s, train_s, refine_s, reserve_s, denoiser_s) and what it cut
            "time_budget": training.get("time_budget"),
            "perceptual": training.get("perceptual"),  # --perceptual's term (kind, weight, last distance)
            "refine": training.get("refine"),  # per-image latent refinement: steps, seconds
            "target": training.get("target"),  # --target-psnr: what the search did, images below it
            "budget": training.get("budget"),  # --max-bytes: the gain found, the rest assumed, trials
            "tails": training.get("tails"),  # images that keep per-image codec data (tails): images, bytes
            "appends": training.get("appends", []),  # one record per append
            "appendable": bool(reader.config.get("appendable", False)),
            # S<s>K<k> context tables (see archiver.codec.context), or "channel" (version 1)
            "entropy_model": (training.get("entropy_model") or {}).get("chosen", "channel"),
            "warm_start": (training.get("warm_start") or {}).get("name"),
            "pack_seconds": summary.get("pack_seconds"),
            "decoder_macs_per_pixel": _macs_per_pixel(reader),
            "codec": reader.codec.desc.to_dict(),
            "config": reader.config,
        }


def list_entries(path: Path) -> list[dict]:
    """One row per entry: name, kind, size WxH, mode, record bytes, bpp, PSNR, note.

    In version 3 an image's bytes are its share of its group (the group's bytes over its images),
    and its original size is not kept (0)."""
    with ArchiveReader(Path(path)) as reader:
        rows = []
        for e in reader.entries:
            image = e.kind is EntryKind.IMAGE
            if image and e.block >= 0:
                e = dataclasses.replace(e, length=round(e.length / len(reader.group_members(e))))
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
                reader.codec.graph()  # stored, or the one the archive's base ships
                reader.codec.check_decodable()  # whatever else the codec needs (its base, more graphs)
                reader.codec.coder()  # the codec's entropy model, validated
                if reader.has_denoiser:
                    reader.model_arrays("denoiser")
                    reader.onnx_graph("denoiser_onnx")
                if reader.has_encoder:
                    reader.model_arrays("encoder")
            except ArchiverError as exc:
                report.problems.append(str(exc))
        decoder = ArchiveDecoder(reader, provider)
        group_crcs: dict[int, dict[int, int]] = {}  # version 3: block -> member -> decoded pixel CRC
        for n, entry in enumerate(reader.entries, 1):
            report.checked += 1
            try:
                if entry.kind is EntryKind.IMAGE and entry.block >= 0:
                    reader.read_image(entry)  # group checksum, latent stream and extras
                    if decode:
                        image, _ = decoder.image(entry)
                        report.decoded += 1
                        group_crcs.setdefault(entry.block, {})[entry.member] = pixel_crc32(image)
                    continue
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
        _check_groups(reader, group_crcs, report)
    return report


def _check_groups(reader: ArchiveReader, group_crcs: dict[int, dict[int, int]], report: VerifyReport) -> None:
    """Version 3: each fully decoded group's pixel check (CRC-32 of its members' pixel CRC-32s)."""
    by_block: dict[int, list] = {}
    for e in reader.entries:
        if e.kind is EntryKind.IMAGE and e.block in group_crcs:
            by_block.setdefault(e.block, []).append(e)
    for block, crcs in group_crcs.items():
        members = by_block[block]
        if len(crcs) != len(members):
            continue  # a member failed to decode: already reported
        check = zlib.crc32(b"".join(crcs[m].to_bytes(4, "little") for m in range(len(members))))
        if check != reader.blocks[block].pixel_crc32:
            names = ", ".join(e.display for e in members[:5]) + (" …" if len(members) > 5 else "")
            report.problems.append(
                f"image group {block} ({names}): decoded pixels differ from those measured at pack time; "
                "this decoder does not reproduce the archive exactly"
            )
