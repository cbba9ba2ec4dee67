"""Command line: parse, call one library function, print. ``archiver --help`` lists the commands."""

from __future__ import annotations

import json
import math
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer

from enum import Enum

from .codecs import CODEC_NAMES, DEFAULT_CODEC, codec as codec_package
from .config import TrainConfig
from .cli_report import fmt_bytes, print_other_entries, print_pack_report
from .errors import ArchiverError, InputError

if TYPE_CHECKING:
    from rich.progress import Progress

#: ``--codec``'s choices: the registry's codecs (:data:`archiver.codecs.CODEC_NAMES`).
CodecName = Enum("CodecName", {name: name for name in CODEC_NAMES}, type=str)  # type: ignore[misc]
#: ``--quality`` when none is given, with the default codec.
_DEFAULT_QUALITY = codec_package(DEFAULT_CODEC).DEFAULT_QUALITY

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Neural collection archiver (.nca)."
)


class _LazyConsole:
    """A rich Console made on first use: rich is imported only by the commands that print through it
    (``extract --quiet`` starts without it, its summary is one plain line)."""

    def __init__(self, **options) -> None:
        self._options = options
        self._console = None

    def __getattr__(self, name: str):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


# soft_wrap: messages stay one line each (scripts grep them), whatever the terminal width.
out = _LazyConsole(soft_wrap=True)
err = _LazyConsole(stderr=True, soft_wrap=True)


def _terminate(signum, frame) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so that temporary files are removed.
    raise KeyboardInterrupt


@contextmanager
def _user_errors() -> Iterator[None]:
    """Map library errors to `error: ...` on stderr and exit code 2; Ctrl-C / SIGTERM to exit code 130."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except ArchiverError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    except OSError as exc:  # disk full, permission denied, … while writing
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was left half-written (pack --resume continues from the last checkpoint)", err=True)
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Bars:
    """Rich progress bars driven by the library's ProgressEvents."""

    def __init__(self, progress: Progress | None, time_limit: float = 0.0) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.time_limit = time_limit
        self.started = False

    def close(self) -> None:
        if self.started:
            self.progress.stop()  # type: ignore[union-attr]

    def __call__(self, event) -> None:
        if self.progress is None:
            return
        if not self.started:
            # Started on the first event only, so that an early error prints nothing but itself.
            self.progress.start()
            self.started = True
        if event.stage not in self.tasks:
            total = self.time_limit if event.stage == "train" else event.total
            self.tasks[event.stage] = self.progress.add_task(event.stage, total=total or None, info="")
        task = self.tasks[event.stage]
        if event.stage == "train":
            p = event.detail
            info = (
                f"step {p.step}  loss {p.loss:.3f}  PSNR {p.psnr:.2f} dB  bpp {p.bpp:.3f}  "
                f"lr {p.lr:.0e}  ≤{max(p.remaining, 0) / 60:.1f} min left"
            )
            # training runs for its share of --time-limit: the bar's total is that share
            self.progress.update(task, completed=p.elapsed, total=p.elapsed + max(p.remaining, 0), info=info)
        else:
            d = event.detail if isinstance(event.detail, dict) else {}
            info = f"{d['psnr']:.2f} dB" if "psnr" in d else ""
            info += f"  {d['bpp']:.3f} bpp" if "bpp" in d else ""
            info += f"  ≤{max(d['left_s'], 0) / 60:.1f} min left" if "left_s" in d else ""
            self.progress.update(task, completed=event.done, total=event.total, info=info)


@contextmanager
def _bars(quiet: bool, time_limit: float = 0.0) -> Iterator[_Bars]:
    progress = None
    if not quiet and err.is_terminal:  # no bars in logs and pipes: the final summary says it all
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("{task.description:>7}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=err,
            transient=True,  # the summary printed afterwards says what the bars said
        )
    bars = _Bars(progress, time_limit)
    try:
        yield bars
    finally:
        bars.close()


def _optional_duration(text: str) -> float:
    """Seconds in ``text``, with ``0`` meaning "the default" (0.0)."""
    from .config import parse_duration

    return 0.0 if text.strip() in ("0", "0s") else parse_duration(text)


@app.command()
def pack(
    source: Path = typer.Argument(..., help="Folder to archive (walked recursively)."),
    output: Path = typer.Option(..., "-o", "--output", help="Archive to write (.nca)."),
    quality: Optional[int] = typer.Option(
        None, "--quality", "-q",
        help=f"1 smallest … 8 best (default: the codec's own, {_DEFAULT_QUALITY} with the default codec, about 36 dB on "
        "photos; with --target-psnr or --max-bytes: chosen from it).",
    ),
    target_psnr: Optional[float] = typer.Option(
        None, "--target-psnr",
        help="Every image at least this PSNR in dB, each at the lowest rate found (codecs with per-image rates).",
    ),
    max_bytes: Optional[str] = typer.Option(
        None, "--max-bytes",
        help="The whole archive at most this size: 500M, 4G, 4GiB or bytes (codecs with per-image rates).",
    ),
    time_limit: Optional[str] = typer.Option(
        None, "--time-limit",
        help="Whole pack time (training, refinement, coding, writing; scanning the input comes on top): 90, 90s, 15m, 2h (default 15m).",
    ),
    effort: Optional[float] = typer.Option(
        None, "--effort", min=0.01,
        help="Pack time per pixel instead of --time-limit: 1 is about 27 s per megapixel (8 minutes for 17.5 Mpx); 16 is 16 times that.",
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random generator."),
    max_steps: int = typer.Option(200_000, "--max-steps", min=1, help="Cap on training steps (reproducible runs)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing archive."),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse images that would be stored as is (or, with --target-psnr, coded below it)."
    ),
    denoiser: bool = typer.Option(False, "--denoiser", help="Also train a post-filter; kept only if it pays for its bytes."),
    model_size: str = typer.Option("auto", "--model-size", help="Decoder size: auto (by pixel count), tiny, small, base, large."),
    codec: CodecName = typer.Option(
        DEFAULT_CODEC, "--codec",
        help="Image codec: " + "; ".join(f"{n} ({codec_package(n).SUMMARY})" for n in CODEC_NAMES) + ".",
    ),
    gan: bool = typer.Option(False, "--gan", help="Adversarial phase (PatchGAN, hinge loss) for sharper images."),
    perceptual: str = typer.Option("none", "--perceptual", help="Perceptual term in the loss: none, msssim, lpips."),
    lpips_weights: str = typer.Option(
        "", "--lpips-weights", envvar="ARCHIVER_LPIPS_WEIGHTS",
        help="Folder with alexnet-*.pth and lpips' alex.pth (for --perceptual lpips).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted pack from its last checkpoint."),
    checkpoint_every: str = typer.Option("3m", "--checkpoint-every", help="How often training is checkpointed."),
    refine: int = typer.Option(
        TrainConfig.refine_steps, "--refine", min=0, help="Per-image latent refinement through the int8 decoder: at most this many steps (0: off)."
    ),
    refine_time: str = typer.Option(
        "0", "--refine-time",
        help="Time for refining the whole collection, taken from --time-limit (0: what training leaves of it).",
    ),
    appendable: bool = typer.Option(
        False, "--appendable", help="Also keep the int8 encoder, so `append` is faster and closer to a repack."
    ),
    warm_start: bool = typer.Option(
        True, "--warm-start/--no-warm-start",
        help="Start from the general codec shipped for the chosen decoder size (when there is one) instead of random weights.",
    ),
    self_contained: bool = typer.Option(
        False, "--self-contained",
        help="Store the whole model even when training started from a shipped base codec (default: only the difference from it).",
    ),
    image_tails: bool = typer.Option(
        True, "--image-tails/--no-image-tails",
        help="Let large images carry their own small change to the decoder's last layer where it saves bytes.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Learn a codec for the images under SOURCE and write one archive."""
    from .config import config_for_quality, parse_duration, parse_size
    from .pack import pack as do_pack

    with _user_errors():
        cfg = config_for_quality(
            quality, time_limit=parse_duration(time_limit or "15m"), effort=_effort(effort, time_limit), seed=seed, device=device, max_steps=max_steps,
            denoiser=denoiser, model_size=model_size, gan=gan, perceptual=perceptual, appendable=appendable,
            refine_steps=refine, refine_time=_optional_duration(refine_time), warm_start=warm_start, codec=codec.value,
            self_contained=self_contained, target_psnr=target_psnr, image_tails=image_tails,
            max_bytes=parse_size(max_bytes) if max_bytes is not None else 0,
        )  # fmt: skip
        with _bars(quiet, 0.0 if cfg.train.effort else cfg.train.time_limit) as bars:
            report = do_pack(
                source, output, cfg, force=force, strict=strict, resume=resume,
                checkpoint_every=parse_duration(checkpoint_every), progress=bars, lpips_weights=lpips_weights or None,
            )  # fmt: skip
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        return
    print_pack_report(out, report)


@app.command()
def append(
    archive: Path = typer.Argument(..., help="Archive to add to (rewritten in place, atomically)."),
    source: Path = typer.Argument(..., help="Folder whose files are added at the archive's root."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Latent steps per new image (default 30 from a stored encoder, 100–300 from a shipped start, depending on the codec, else 300 of search)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Refuse images that would be stored as is."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Add the files under SOURCE to ARCHIVE with its stored decoder (no retraining)."""
    from .append import append as do_append

    with _user_errors(), _bars(quiet, 0.0) as bars:
        report = do_append(archive, source, steps=steps, strict=strict, progress=bars)
    out.print(
        f"[bold]{report.archive}[/]: {fmt_bytes(report.archive_bytes_before)} → {fmt_bytes(report.archive_bytes)} "
        f"in {report.seconds:.0f} s"
    )
    if report.images:
        out.print(
            f"  {report.images} images added ({report.method}, {report.steps} steps), {report.pixels / 1e6:.2f} Mpx: "
            f"latents {report.latent_bpp:.3f} bpp, "
            f"mean PSNR {report.mean_psnr:.2f} dB; the archive's own images: {report.archive_latent_bpp:.3f} bpp, "
            f"{report.archive_mean_psnr:.2f} dB (a repack would train on the new images too)"
        )
    print_other_entries(out, report)


def _effort(effort: float | None, time_limit: str | None) -> float:
    """``--effort`` (0: not asked); with ``--time-limit`` as well, an :class:`InputError`."""
    if effort is not None and time_limit is not None:
        raise InputError("--effort and --time-limit both set the pack's time: give one of them")
    return effort or 0.0


@app.command()
def extract(
    archive: Path = typer.Argument(..., help="Archive to read."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder to write the collection into."),
    names: Optional[List[str]] = typer.Argument(None, help="Entries to extract: names, folders or globs."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    image_format: Optional[str] = typer.Option(None, "--format", help="Write images as this format (png)."),
    provider: str = typer.Option("auto", "--provider", help="ONNX Runtime provider: auto, cpu, cuda, dml, coreml, qnn, openvino, …"),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads (default: the codec's choice; all cores, or all but the one the entropy decoding keeps busy)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images of equal coded size decoded per runtime call."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Skip damaged entries (exit 1) instead of stopping."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Recreate the archived tree (or the named entries) under OUTPUT. Needs no torch."""
    from .extract import extract as do_extract

    with _user_errors():
        with _bars(quiet) as bars:
            report = do_extract(
                archive, output, names or [], force=force, image_format=image_format, provider=provider,
                threads=threads, batch_size=batch_size, keep_going=keep_going, progress=bars,
            )  # fmt: skip
    typer.echo(
        f"{output}: {report.images} images decoded, {report.files} files, {report.folders} folders, "
        f"{report.symlinks} symlinks"
    )
    for name, why in report.failed:
        typer.echo(f"error: {name}: not extracted: {why}", err=True)
    if report.failed:
        typer.echo(f"{len(report.failed)} damaged entries skipped", err=True)
        raise typer.Exit(1)


@app.command()
def bench(
    source: Path = typer.Argument(..., help="Folder of images to compare on (walked recursively)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for bench.json, bench.md, bench.png and look.png."),
    qualities: str = typer.Option("2,4,6", "--qualities", help="Archiver --quality levels, comma-separated."),
    codec: CodecName = typer.Option(DEFAULT_CODEC, "--codec", help="The archiver's codec (default: pack's)."),
    target_psnr: str = typer.Option(
        "", "--target-psnr",
        help="Archiver points by --target-psnr instead of --quality (dB, comma-separated; codecs with per-image rates).",
    ),
    time_limit: str = typer.Option("8m", "--time-limit", help="Pack time per archiver point (pack's --time-limit)."),
    codecs: str = typer.Option("jpeg,webp,avif,jxl", "--codecs", help="Classic codecs, comma-separated."),
    limit: int = typer.Option(0, "--limit", min=0, help="Use only the first N images (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random generator."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Compare the archiver with JPEG, WebP, AVIF and JPEG XL on your own images (bytes on disk, PSNR, MS-SSIM)."""
    from .bench.folder import REPORT_STEM, bench_folder
    from .config import parse_duration

    with _user_errors():
        try:
            levels = tuple(int(q) for q in qualities.split(","))
        except ValueError:
            raise InputError(f"--qualities must be comma-separated integers, got {qualities!r}") from None
        try:
            targets = tuple(float(t) for t in target_psnr.split(",")) if target_psnr.strip() else ()
        except ValueError:
            raise InputError(f"--target-psnr must be comma-separated numbers of dB, got {target_psnr!r}") from None
        budget = parse_duration(time_limit)
        with _bars(quiet, budget) as bars:
            bench_folder(
                source, output, qualities=levels, time_limit=budget, seed=seed, codecs=codecs.split(","),
                limit=limit or None, progress=bars, codec=codec.value, target_psnrs=targets,
            )  # fmt: skip
    out.print((output / f"{REPORT_STEM}.md").read_text(), markup=False, highlight=False)
    out.print(f"report: {output / (REPORT_STEM + '.md')}, {output / (REPORT_STEM + '.json')}, "
              f"{output / (REPORT_STEM + '.png')}, {output / 'look.png'}")  # fmt: skip


@app.command("list")
def list_cmd(archive: Path = typer.Argument(..., help="Archive to read.")) -> None:
    """One row per entry: name, size WxH, mode, record bytes, bpp, PSNR."""
    from .inspect import list_entries

    with _user_errors():
        rows = list_entries(archive)
    from rich.table import Table

    table = Table(box=None)
    for col in ("name", "kind", "size", "mode", "bytes", "bpp", "PSNR", "note"):
        table.add_column(col, justify="right" if col in ("bytes", "bpp", "PSNR") else "left")
    for r in rows:
        table.add_row(
            r["name"], r["kind"], r["size"], r["mode"], str(r["bytes"]),
            f"{r['bpp']:.3f}" if r["bpp"] is not None else "", f"{r['psnr']:.2f}" if r["psnr"] is not None else "",
            r["note"],
        )  # fmt: skip
    out.print(table)


@app.command()
def info(
    archive: Path = typer.Argument(..., help="Archive to read."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Totals, model/latent/other bytes, ratios, training summary and config."""
    from .inspect import archive_info

    with _user_errors():
        data = archive_info(archive)
    if as_json:
        print(json.dumps(data, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
        return
    from rich.table import Table

    table = Table(box=None, show_header=False)
    for key, value in data.items():
        if key == "config":
            value = json.dumps(value)
        elif isinstance(value, float):
            value = f"{value:.4f}"
        table.add_row(key, str(value))
    out.print(table)


@app.command()
def verify(
    archive: Path = typer.Argument(..., help="Archive to check."),
    decode: bool = typer.Option(False, "--decode", help="Also decode every image and compare with pack time."),
    provider: str = typer.Option("cpu", "--provider", help="ONNX Runtime provider for --decode."),
) -> None:
    """Check every checksum (exit 0 if intact, 1 if not)."""
    from .inspect import verify as do_verify

    with _user_errors():
        report = do_verify(archive, decode=decode, provider=provider)
    for problem in report.problems:
        err.print(f"FAIL {problem}", markup=False, highlight=False)
    if not report.ok:
        err.print(f"{archive}: {len(report.problems)} problem(s) in {report.checked} entries", markup=False)
        raise typer.Exit(1)
    extra = f", {report.decoded} images decoded identically" if decode else ""
    out.print(f"{archive}: OK, {report.checked} entries checked{extra}", markup=False)


def main() -> None:  # pragma: no cover - console entry for `python -m archiver`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
