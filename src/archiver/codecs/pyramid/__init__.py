"""The latent-pyramid codec: integer latent grids from full size down to 1/2**(L-1), an integer
context entropy coder, a tiny int8 synthesis; trained per collection from a shipped base.

What the registry (:mod:`archiver.codecs`) asks of a codec; every heavy import waits for its call.
"""

from __future__ import annotations

from .levels import (DEFAULT_QUALITY, LAMBDAS, LEVEL_POINTS, MEASURE_SECONDS_PER_MPX, REFINE_SECONDS_PER_MPX_STEP,
                     REFINE_TIME_FACTOR, WRITE_SECONDS_PER_MPX, quality_for)  # fmt: skip
from .versions import READS, validate

__all__ = ["READS", "validate", "read_side", "LAMBDAS", "LEVEL_POINTS", "DEFAULT_QUALITY", "REFINE_TIME_FACTOR",
           "MEASURE_SECONDS_PER_MPX", "WRITE_SECONDS_PER_MPX", "REFINE_SECONDS_PER_MPX_STEP", "RATE_CONTROL",
           "quality_for", "check_options", "resolve", "code_images", "code_new", "check_budget",
           "write_within_budget"]  # fmt: skip

#: What ``pack --codec`` says of it.
SUMMARY = "latent grids down to full size"
#: Per-image rates: ``--target-psnr`` (per-image gains) and ``--max-bytes`` (one gain for all).
RATE_CONTROL = True


def read_side(reader, desc):
    """:class:`archiver.codecs.pyramid.read.PyramidReadSide` of an open archive."""
    from .read import PyramidReadSide

    return PyramidReadSide(reader, desc)


def check_options(cfg) -> None:
    """Refuse, before any work, options this codec cannot honour."""
    from .pack import check_pyramid_options

    check_pyramid_options(cfg)


def resolve(cfg, pixels: int):
    """``cfg`` as this codec packs a collection of ``pixels`` coded pixels (unchanged)."""
    return cfg


def code_images(cfg, images, checkpointer, spool_dir, progress, lpips_weights=None, budget_rest: int = 0):
    """Pack's image side (:func:`archiver.codecs.pyramid.pack.code_images_pyramid`)."""
    from .pack import code_images_pyramid

    return code_images_pyramid(cfg, images, checkpointer, spool_dir, progress, budget_rest, lpips_weights)


def code_new(writer, reader, cfg, images, steps, use_encoder, progress):
    """Append's image side (:func:`archiver.codecs.pyramid.append.code_new_pyramid`)."""
    from .append import code_new_pyramid

    return code_new_pyramid(writer, reader, cfg, images, steps, use_encoder, progress)


def check_budget(cfg, items, classes) -> int:
    """``--max-bytes``: refuse an impossible budget before training (:mod:`archiver.codecs.pyramid.budget`)."""
    from .budget import check_budget as check

    return check(cfg, items, classes)


def write_within_budget(write, coded, max_bytes: int, output) -> None:
    """``--max-bytes``: write the archive within the budget (:mod:`archiver.codecs.pyramid.budget`)."""
    from .budget import write_within_budget as write_budget

    write_budget(write, coded, max_bytes, output)
