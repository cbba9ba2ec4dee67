"""The residual convolutional autoencoder: one latent at 1/16, context-bucketed integer tables, a conv
decoder; the first codec (format versions 1–3), kept for ``pack --codec autoencoder`` and for every
archive made with it.

What the registry (:mod:`archiver.codecs`) asks of a codec; every heavy import waits for its call.
"""

from __future__ import annotations

from .levels import DEFAULT_QUALITY, LAMBDAS, MEASURE_SECONDS_PER_MPX, REFINE_TIME_FACTOR, WRITE_SECONDS_PER_MPX

__all__ = ["READS", "validate", "read_side", "LAMBDAS", "DEFAULT_QUALITY", "REFINE_TIME_FACTOR",
           "MEASURE_SECONDS_PER_MPX", "WRITE_SECONDS_PER_MPX", "RATE_CONTROL", "check_options",
           "resolve", "code_images", "code_new"]  # fmt: skip

#: Versions of this codec this archiver reads.
READS: tuple[int, ...] = (1,)
#: What ``pack --codec`` says of it.
SUMMARY = "one latent at 1/16, the first codec"
#: No per-image rates (``--target-psnr``, ``--max-bytes``).
RATE_CONTROL = False


def validate(desc) -> str | None:
    """What is wrong with ``desc``, or None: the autoencoder always stores its own graph."""
    return "cannot take its graph from a base" if "graph" in desc.base else None


def read_side(reader, desc):
    """:class:`archiver.codecs.autoencoder.read.AutoencoderReadSide` of an open archive."""
    from .read import AutoencoderReadSide

    return AutoencoderReadSide(reader, desc)


def check_options(cfg) -> None:
    """Refuse, before any work, what this codec does not have."""
    from ...errors import InputError

    if cfg.self_contained:
        raise InputError("--self-contained is not an option of --codec autoencoder: it always stores its whole model")


def resolve(cfg, pixels: int):
    """``cfg`` with ``model_size="auto"`` replaced by the preset :data:`archiver.config.MODEL_BPP_BUDGET`
    allows for a collection of ``pixels`` coded pixels (the smallest preset if none fits)."""
    import dataclasses

    from ...config import MODEL_BPP_BUDGET, MODEL_PRESETS
    from .architecture import decoder_params

    if cfg.model_size != "auto":
        return cfg
    budget_bytes = MODEL_BPP_BUDGET * pixels / 8
    name = "tiny"
    for candidate, model in MODEL_PRESETS.items():  # smallest to largest
        if decoder_params(model) <= budget_bytes:
            name = candidate
    return dataclasses.replace(cfg, model=MODEL_PRESETS[name], model_size=name)


def code_images(cfg, images, checkpointer, spool_dir, progress, lpips_weights=None, budget_rest: int = 0):
    """Pack's image side (:func:`archiver.codecs.autoencoder.pack.code_images_autoencoder`)."""
    from .pack import code_images_autoencoder

    return code_images_autoencoder(cfg, images, checkpointer, spool_dir, progress, lpips_weights)


def code_new(writer, reader, cfg, images, steps, use_encoder, progress):
    """Append's image side (:func:`archiver.codecs.autoencoder.append.code_new_autoencoder`)."""
    from .append import code_new_autoencoder

    return code_new_autoencoder(writer, reader, cfg, images, steps, use_encoder, progress)
