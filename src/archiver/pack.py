"""``pack``: folder → trained codec → one .nca archive."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


from .collection.images import NOT_AN_IMAGE, SourceImage, load_image
from .collection import pool
from .collection.scan import ScanItem, check_output_outside, scan_tree
from .codecs import codec
from .config import PackConfig, resolve_budget_quality
from .container.format import EntryKind
from .errors import InputError, MissingDependencyError, OutputExistsError
from .pack_write import _write_archive
from .model.allocator import keep_freed_memory
from .progress import ProgressCallback, emit
from .time_budget import TimeBudget, running

__all__ = ["PackReport", "CodedImages", "pack", "checkpoint_dir"]


@dataclass
class PackReport:
    """What pack did, for the CLI summary."""

    archive: Path
    archive_bytes: int
    input_bytes: int
    images: int
    files: int
    folders: int
    symlinks: int
    pixels: int
    latent_bytes: int
    mean_psnr: float
    seconds: float
    training: dict
    stored_as_is: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bpp(self) -> float:
        """Archive bits per coded pixel, everything included."""
        return self.archive_bytes * 8 / self.pixels if self.pixels else math.nan

    @property
    def ratio(self) -> float:
        """Input bytes / archive bytes."""
        return self.input_bytes / self.archive_bytes if self.archive_bytes else math.nan


def checkpoint_dir(output: Path) -> Path:
    """Sidecar folder of training checkpoints for a pack writing ``output``."""
    return output.with_name(f".{output.name}.resume")


def _fingerprint(items: list[ScanItem], cfg: PackConfig) -> str:
    """Identity of a pack's input and options, so that --resume never mixes two different packs."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for item in items:
        digest.update(item.rel + b"\0" + f"{item.stat.st_size} {item.stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _classify(
    items: list[ScanItem], progress: ProgressCallback | None, strict: bool = False
) -> dict[int, SourceImage | str]:
    """For every regular file: its SourceImage if coded, else the reason it is kept byte-exact.

    With ``strict`` an image-looking file that would be kept byte-exact is an error instead.
    """
    out: dict[int, SourceImage | str] = {}
    files = [i for i, it in enumerate(items) if it.kind is EntryKind.FILE]
    resident = 0  # bytes of pixels kept in memory; beyond pool.RESIDENT_BYTES images are read again when needed
    for n, i in enumerate(files, 1):
        try:
            image, reason = load_image(items[i].path)
        except OSError as exc:
            raise InputError(f"{items[i].path}: cannot read ({exc.strerror or exc})") from None
        if image is None and strict and reason != NOT_AN_IMAGE:
            raise InputError(f"{items[i].path}: would be stored as is ({reason}); --strict refuses fallbacks")
        if image is not None:
            resident += image.rgb.nbytes
            if resident > pool.RESIDENT_BYTES:
                image = image.release()
        out[i] = image if image is not None else reason
        emit(progress, "scan", n, len(files))
    return out


def _import_training():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "pack needs PyTorch: install the training extra (pip install torch==2.13.0 'archiver[train]')"
        ) from None
    from .model import int8

    return int8


@dataclass
class CodedImages:
    """Everything the image side of an archive needs: model, tables, bitstreams, measured quality."""

    training: dict = field(
        default_factory=lambda: {"steps": 0, "train_seconds": 0.0, "stop_reason": "no images", "history": []}
    )
    model_blob: tuple[bytes, list[dict]] | None = None
    encoder_blob: tuple[bytes, list[dict]] | None = None  #: only for ``appendable`` archives
    onnx_graph: bytes = b""
    tables: object = None
    bitstreams: Mapping[int, bytes] = field(default_factory=dict)  #: a LatentSpool after pack
    latents: object = None  #: image number -> integer latent (what the archive's groups code)
    psnrs: dict[int, float] = field(default_factory=dict)
    crcs: dict[int, int] = field(default_factory=dict)
    postfilter: object = None
    #: the CodecDescription of a codec with its own entropy model (archiver.codecs); None: the
    #: archive's entropy tables are ``tables`` and its codec is described by ``config.model``
    codec: object = None
    entropy_blob: tuple[bytes, list[dict]] | None = None  #: its entropy model's arrays (/model/entropy)
    coder: object = None  #: its coder (encode_many / decode_many), for the writer's groups
    gains: dict[int, int] = field(default_factory=dict)  #: image number -> gain code (``--target-psnr``)
    #: image number -> its per-image codec data (absent or empty: none), and the codec's graphs
    #: besides the decoder's (``/model/<name>``: ONNX without weights) that such data needs
    image_codec: dict[int, bytes] = field(default_factory=dict)
    more_graphs: dict[str, bytes] = field(default_factory=dict)
    #: ``--max-bytes``: the bytes the fit predicted for the model and latents, and ``refit(rest)``,
    #: which codes everything again for a budget leaving ``rest`` bytes to the rest of the archive
    predicted_bytes: int = 0
    refit: object = None


def _code_images(
    cfg: PackConfig,
    items: list[ScanItem],
    images: dict[int, SourceImage],
    output: Path,
    resume: bool,
    checkpoint_every: float,
    progress: ProgressCallback | None,
    lpips_weights: str | None = None,
    budget_rest: int = 0,
) -> CodedImages | None:
    """Train the codec on ``images``, code each one and measure it as extract will decode it
    (the ``code_images`` of its package, :mod:`archiver.codecs`).

    Returns None on torchrun ranks other than 0 (they code their share of the images first).
    """
    from .model.checkpoint import Checkpointer

    checkpointer = Checkpointer(checkpoint_dir(output), _fingerprint(items, cfg), checkpoint_every, resume)
    if not resume and os.environ.get("RANK", "0") == "0":
        checkpointer.remove()
    spool_dir = checkpoint_dir(output) / "spool"
    return codec(cfg.codec).code_images(cfg, images, checkpointer, spool_dir, progress, lpips_weights, budget_rest)


def pack(
    source: Path,
    output: Path,
    cfg: PackConfig,
    *,
    force: bool = False,
    strict: bool = False,
    resume: bool = False,
    checkpoint_every: float = 180.0,
    progress: ProgressCallback | None = None,
    lpips_weights: str | Path | None = None,
) -> PackReport | None:
    """Pack the folder ``source`` into the archive ``output``.

    Images are coded by a codec trained on them (see :class:`PackConfig`); everything else is stored
    byte-exact. The archive appears only when complete (temporary file + fsync + rename). With
    ``strict``, an image that would fall back to byte-exact storage (damaged, 16-bit, CMYK,
    animated, too large, …) is an :class:`InputError` instead; files that are not images at all
    are still stored as they are.

    ``cfg.train.time_limit`` bounds the whole pack once the input is scanned: training, refinement,
    coding and writing (and the denoiser) share it (:mod:`archiver.time_budget`); the training
    summary's ``time_budget`` says how, and what it cut.

    Training is checkpointed every ``checkpoint_every`` seconds in ``.<output name>.resume/``; after
    a crash or kill, ``resume`` continues from there (same input and options, else an error). The
    folder is removed once the archive is complete; without ``resume`` a stale one is discarded.

    Under ``torchrun`` every process trains (data parallel) and only rank 0 writes; the other ranks
    return None. ``lpips_weights`` is the folder of LPIPS weights ``--perceptual lpips`` needs.
    """
    started = time.monotonic()
    source, output = Path(source), Path(output)
    _check_before_work(cfg, source, output, force, lpips_weights)
    keep_freed_memory()  # training and refinement allocate the same large arrays every step
    items = scan_tree(source)
    classes = _classify(items, progress, strict)
    images = {i: c for i, c in classes.items() if isinstance(c, SourceImage)}
    cfg = codec(cfg.codec).resolve(cfg, sum(im.width * im.height for im in images.values()))
    budget_rest = 0
    if cfg.max_bytes:
        budget_rest = codec(cfg.codec).check_budget(cfg, items, classes)  # an impossible budget fails before training
        cfg = resolve_budget_quality(cfg, sum(im.width * im.height for im in images.values()), budget_rest)
    # --time-limit bounds what follows: training, refinement, coding, writing (scanning came before)
    clock = TimeBudget.plan(cfg, sum(im.width * im.height for im in images.values()))
    reports: list[PackReport] = []

    def write(path: Path) -> int:
        reports.append(_write_archive(path, cfg, items, classes, coded, images, started, progress))
        return reports[-1].archive_bytes

    try:
        with running(clock):
            coded = (
                _code_images(cfg, items, images, output, resume, checkpoint_every, progress,
                             lpips_weights and str(lpips_weights), budget_rest)  # fmt: skip
                if images
                else CodedImages()
            )
        if coded is None:
            return None  # under torchrun, rank 0 alone codes the images and writes the archive
        if images:
            coded.training["time_budget"] = clock.summary(coded.training)
        _check_target(coded, strict)
        if cfg.max_bytes:
            codec(cfg.codec).write_within_budget(write, coded, cfg.max_bytes, output)
        else:
            write(output)
    except InputError:
        # a promise the trained codec cannot keep (--max-bytes, --target-psnr --strict): resuming
        # would train the same codec again
        shutil.rmtree(checkpoint_dir(output), ignore_errors=True)
        raise
    report = reports[-1]
    report.archive = output
    if images:
        shutil.rmtree(checkpoint_dir(output), ignore_errors=True)  # the archive is complete
    return report


def _check_before_work(cfg: PackConfig, source: Path, output: Path, force: bool, lpips_weights) -> None:
    """What can fail before any scanning or training: torch missing, options the codec refuses, LPIPS
    weights missing or wrong, an output inside the source, one that exists, or no folder for it."""
    _import_training()
    codec(cfg.codec).check_options(cfg)
    if cfg.train.perceptual == "lpips":
        from .model.perceptual import load_lpips

        load_lpips(lpips_weights)
    check_output_outside(source, output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists (use --force to overwrite)")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: output folder does not exist")


def _check_target(coded: CodedImages, strict: bool) -> None:
    """``--target-psnr`` with ``--strict``: an image below the target is an error (nothing written)."""
    unreached = coded.training.get("target", {}).get("unreached", [])
    if strict and unreached:
        first = unreached[0]
        more = f" (and {len(unreached) - 1} more)" if len(unreached) > 1 else ""
        raise InputError(
            f"{first['path']}: reaches only {first['psnr']:.2f} dB, below --target-psnr "
            f"{coded.training['target']['psnr']:g}{more}; without --strict it is coded at its best"
        )
