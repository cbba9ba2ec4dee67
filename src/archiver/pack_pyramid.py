"""``pack`` with ``--codec pyramid``: train the latent-pyramid codec, code every image, fit the tables.

The steps mirror the autoencoder's (:func:`archiver.pack._code_images`): train, export the int8
synthesis and the fixed-point context network, infer and refine each image's latent, measure it
through the ONNX runtime extract uses, spool it, then count the residual tables and range-code.
"""

from __future__ import annotations

import time
from pathlib import Path

from .codecs import CodecDescription, pyramid_tiling
from .collection.images import SourceImage, measure_decoded
from .collection.pool import training_set
from .config import PackConfig
from .errors import InputError
from .progress import ProgressCallback, emit

__all__ = ["check_pyramid_options", "code_images_pyramid"]


def check_pyramid_options(cfg: PackConfig) -> None:
    """Refuse options the pyramid codec does not have yet (before any work)."""
    tc = cfg.train
    for flag, on in (("--denoiser", tc.denoiser), ("--gan", tc.gan), ("--appendable", cfg.appendable),
                     ("--perceptual", tc.perceptual != "none")):  # fmt: skip
        if on:
            raise InputError(f"{flag} is not available with --codec pyramid yet")


def code_images_pyramid(cfg: PackConfig, images: dict[int, SourceImage], checkpointer, spool_dir: Path,
                        progress: ProgressCallback | None):  # fmt: skip
    """Train on ``images``, code each one; returns :class:`archiver.pack.CodedImages`."""
    import torch

    from .codec.bases import to_delta
    from .codec.pyramid_coder import HistogramCounter, PackedPyramidCoder
    from .codec.pyramid_plan import PYRAMID_PRESETS
    from .codec.spool import LatentSpool
    from .codec.weights import pack_arrays
    from .model.pyramid_base import find_pyramid_base
    from .model.pyramid_train import (
        PyramidRecipe, context_net, infer_packed, int8_synthesis, synthesis_arrays, train_pyramid,
    )  # fmt: skip
    from .model.refine import RefineBudget
    from .model.training import resolve_device
    from .pack import CodedImages
    from .runtime.graph import attach_weights, graph_only
    from .runtime.pyramid_graph import build_pyramid_graph
    from .runtime.session import OnnxDecoder

    spec = PYRAMID_PRESETS["default"]
    image_ids = list(images)
    out = CodedImages()
    torch.manual_seed(cfg.train.seed)
    base = find_pyramid_base(spec) if cfg.train.warm_start else None
    # From a base the full-size level has already learned its share: no coarse-first phase.
    pixels = sum(images[i].width * images[i].height for i in image_ids)
    delta = _stores_delta(cfg, base)
    recipe = (
        PyramidRecipe(coarse_steps=0, start=base.state_dict(), model_pixels=pixels if delta else 0)
        if base is not None else PyramidRecipe()
    )  # fmt: skip
    result = train_pyramid(
        training_set([images[i] for i in image_ids], cfg.train.seed), cfg, spec,
        progress=lambda p: emit(progress, "train", p.step, 0, p), checkpointer=checkpointer,
        recipe=recipe, warm_start=base.summary() if base is not None else None,
    )  # fmt: skip
    out.training = result.summary()
    out.training["device"] = str(resolve_device(cfg.train.device))
    reference = _delta_reference(base) if delta else None
    arrays = synthesis_arrays(result.codec, cfg.quality, reference["decoder"] if reference else None)
    out.model_blob = pack_arrays(to_delta(arrays, reference["decoder"]) if reference else arrays, cfg.zstd_level)
    out.onnx_graph = graph_only(build_pyramid_graph(spec))
    based_on = {"id": base.id, "sha256": base.sha256} if reference else {}
    out.codec = CodecDescription("pyramid", 1, spec.to_dict(), based_on)
    tile, halo = pyramid_tiling(spec.stride)
    runtime = OnnxDecoder(attach_weights(out.onnx_graph, arrays), "cpu", None, spec.stride, tile, halo)
    synth = int8_synthesis(result.codec, arrays)
    spool = LatentSpool(spool_dir)
    refine = RefineBudget(
        cfg.train.refine_steps, cfg.train.refine_time or cfg.train.time_limit / 2,
        pixels,
    )  # fmt: skip
    coder = PackedPyramidCoder(spec, context_net(result.codec))
    counter = HistogramCounter()
    for n, i in enumerate(image_ids, 1):
        im = images[i].full()
        steps, started = refine.steps_for(im.width * im.height), time.monotonic()
        latent = infer_packed(result.codec, synth, im.rgb, cfg.quality, cfg.train.lmbda, steps, tile, halo)
        refine.done(im.width * im.height, steps, time.monotonic() - started)
        out.psnrs[i], out.crcs[i] = measure_decoded(runtime.decode(latent, im.height, im.width), im)
        coder.count(latent, counter)
        spool.put(i, latent)
        emit(progress, "encode", n, len(image_ids), {"psnr": out.psnrs[i]})
    out.training["refine"] = refine.summary()
    coder = coder.with_tables(counter.tables())
    out.training["entropy_model"] = {"chosen": "pyramid-context", "tables": int((coder.inner.tables.lengths > 0).sum())}
    entropy = coder.to_arrays()
    out.entropy_blob = pack_arrays(to_delta(entropy, reference["entropy"]) if reference else entropy, cfg.zstd_level)
    out.coder, out.latents = coder, spool.latent  # the writer codes the latents in groups
    return out


def _stores_delta(cfg: PackConfig, base) -> bool:
    """True when the archive stores its model as a difference from ``base``: a released base
    (:data:`archiver.codec.bases.BASES`; no reader would have another) and no ``--self-contained``."""
    from .codec.bases import BASES

    return base is not None and not cfg.self_contained and BASES.get(base.id) == base.sha256


def _delta_reference(base) -> dict:
    """The base's reference arrays (:func:`archiver.codec.bases.pyramid_reference`)."""
    from .codec.bases import base_file, pyramid_reference

    return pyramid_reference(base_file(base.id, base.sha256, base.path.parent))
