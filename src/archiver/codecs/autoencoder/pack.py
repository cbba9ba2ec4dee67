"""pack's image side for the ``autoencoder`` codec, in named steps: train (:func:`_train`), export the
decoder as int8 weights and a graph (:func:`_export`), code each image into the spool and measure it
as extract will decode it (:func:`_encode_share`; under torchrun each rank its share, then
:func:`_gather`), choose the entropy tables from the collection's own latents (:func:`_fit_entropy`)
and decide on the optional denoiser (:func:`_fit_denoiser`). The pyramid's counterpart is
:mod:`archiver.codecs.pyramid.pack`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...collection.images import SourceImage, measure_decoded
from ...collection.pool import PairPool, training_set
from ...config import PackConfig
from ...progress import ProgressCallback, emit
from ...time_budget import current as time_budget

__all__ = ["code_images_autoencoder"]


def code_images_autoencoder(
    cfg: PackConfig,
    images: dict[int, SourceImage],
    checkpointer,
    spool_dir: Path,
    progress: ProgressCallback | None,
    lpips_weights: str | None = None,
):
    """Train on ``images``, code each one; returns :class:`archiver.pack.CodedImages`, or None on
    torchrun ranks other than 0 (they code their share of the images first)."""
    from ...model import int8
    from ...pack import CodedImages, _import_training
    from . import inference
    from . import training as training_mod

    _import_training()
    image_ids = list(images)
    out = CodedImages()
    pixels = sum(im.width * im.height for im in images.values())
    # --time-limit bounds the whole pack: training runs for its share (archiver.time_budget)
    result = _train(time_budget(cfg, pixels).training(cfg), [images[i] for i in image_ids], checkpointer,
                    progress, lpips_weights, training_mod)  # fmt: skip
    out.training = result.summary()
    out.training["device"] = str(training_mod.resolve_device(cfg.train.device))
    decoder, runtime = _export(out, cfg, result, inference, int8)
    spool, pairs = _encode_share(out, cfg, images, image_ids, result, decoder, runtime, spool_dir, progress)
    if result.world > 1 and not _gather(out, cfg, images, image_ids, result, spool, pairs, runtime):
        return None
    out.bitstreams, out.latents = spool, spool.latent
    _fit_entropy(out, spool, image_ids)
    if cfg.train.denoiser:
        _fit_denoiser(out, cfg, images, image_ids, spool, pairs, runtime, progress)
    return out


def _train(cfg: PackConfig, images: list[SourceImage], checkpointer, progress, lpips_weights, training_mod):
    """The collection's codec (:func:`archiver.codecs.autoencoder.training.train_codec`), seeded by the config."""
    import torch

    torch.manual_seed(cfg.train.seed)
    return training_mod.train_codec(
        training_set(images, cfg.train.seed), cfg,
        progress=lambda p: emit(progress, "train", p.step, 0, p), checkpointer=checkpointer,
        lpips_weights=lpips_weights,
    )  # fmt: skip


def _export(out, cfg: PackConfig, result, inference, int8):
    """Store the decoder (int8 unless the config says float), the encoder when ``appendable``, and
    the graph in ``out``; returns (the int8 decoder in torch, for refinement; the runtime extract
    uses). Quality is measured through that runtime (ONNX Runtime, CPU), so the stored PSNR and pixel
    CRC are exactly what extract produces on a CPU."""
    from ...codec.weights import pack_arrays
    from ...runtime.graph import attach_weights, graph_only
    from .graph import build_graph
    from ...runtime.session import OnnxDecoder

    if cfg.int8_weights:
        arrays = int8.quantize_weights(result.model.decoder)
    else:
        arrays = int8.float_decoder_arrays(result.model.decoder)
    out.model_blob = pack_arrays(arrays, cfg.zstd_level)
    if cfg.appendable:  # for append: new images start from the encoder's latent (int8, like the decoder)
        out.encoder_blob = pack_arrays(int8.quantize_weights(result.model.encoder), cfg.zstd_level)
    out.onnx_graph = graph_only(build_graph(cfg.model, int8=cfg.int8_weights))
    decoder = inference.int8_decoder(cfg.model, arrays)
    return decoder, OnnxDecoder(attach_weights(out.onnx_graph, arrays), "cpu")


def _encode_share(out, cfg: PackConfig, images, image_ids, result, decoder, runtime, spool_dir, progress):
    """Code this rank's images one at a time: each latent (refined within the time budget) goes to
    the spool on disk, so memory never holds the collection's pixels or latents, whatever its size.
    Returns (the spool, the denoiser's training pairs)."""
    from ...codec.spool import LatentSpool
    from ...model.distributed import barrier
    from ...model.refine import stop_at
    from .inference import infer_latent

    rank, world = result.rank, result.world
    if rank == 0:
        spool = LatentSpool(spool_dir)
    barrier(world)  # rank 0 has made the spool
    if rank != 0:
        spool = LatentSpool(spool_dir, create=False)
    pairs = PairPool([images[i].height * images[i].width for i in image_ids], cfg.train.seed)
    mine = image_ids[rank::world]
    share = sum(images[i].width * images[i].height for i in mine)
    refine = time_budget(cfg, share).refine_budget(cfg.train.refine_steps, share)  # what --time-limit leaves
    for n, i in enumerate(mine, 1):
        im = images[i].full()
        steps, started = refine.steps_for(im.width * im.height), time.monotonic()
        with stop_at(refine.stop_time()):  # past --time-limit's deadline it keeps the best latent it has
            latent = infer_latent(result.model.encoder, decoder, result.prior, im.rgb, cfg.train.lmbda, steps,
                                  min_size=result.crop)  # fmt: skip
        refine.done(im.width * im.height, steps, time.monotonic() - started)
        pixels = runtime.decode(latent, im.height, im.width)
        if cfg.train.denoiser and world == 1:
            pairs.add(pixels, im.rgb)
        out.psnrs[i], out.crcs[i] = measure_decoded(pixels, im)
        spool.put(i, latent)
        emit(progress, "encode", n, len(mine), {"psnr": out.psnrs[i]})
    out.training["refine"] = refine.summary()  # rank 0's share under torchrun
    return spool, pairs


def _gather(out, cfg: PackConfig, images, image_ids, result, spool, pairs, runtime) -> bool:
    """Under torchrun: every rank's measurements to all, every latent into rank 0's spool. True on
    rank 0 (which finishes the archive), False elsewhere."""
    from ...model.distributed import all_gather, barrier

    for psnrs, crcs in all_gather(result.world, (out.psnrs, out.crcs)):
        out.psnrs.update(psnrs)
        out.crcs.update(crcs)
    barrier(result.world)  # every latent is in the spool
    if result.rank != 0:
        return False
    spool.adopt(image_ids)
    if cfg.train.denoiser:  # the pairs were not collected while the ranks coded their shares
        for i in image_ids:
            im = images[i].full()
            pairs.add(runtime.decode(spool.latent(i), im.height, im.width), im.rgb)
    return True


def _fit_entropy(out, spool, image_ids) -> None:
    """The entropy model chosen from the collection's own latents: contexts only where they save more
    bytes than their tables cost (:mod:`archiver.codec.context`); then every latent coded with it."""
    from ...codec.context import fit_context_tables
    from ...codec.entropy import LatentCoder

    out.tables, out.training["entropy_model"] = fit_context_tables(lambda: (spool.latent(i) for i in image_ids))
    spool.encode_all(LatentCoder(out.tables))


def _fit_denoiser(out, cfg: PackConfig, images, image_ids, spool, pairs, runtime, progress) -> None:
    """Train the post-filter and keep it only where it pays for its bytes
    (:func:`archiver.postfilter.fit_postfilter`); a kept one replaces the measured PSNRs and CRCs."""
    from ...postfilter import fit_postfilter

    def decoded():  # every image again, as extract will decode it, for the denoiser's verdict
        for i in image_ids:
            im = images[i].full()
            yield runtime.decode(spool.latent(i), im.height, im.width), im

    emit(progress, "denoise", 0, 1)
    coded = len(out.model_blob[0]) + sum(spool.lengths.values())
    out.postfilter = fit_postfilter(cfg, pairs.pairs, decoded, [out.psnrs[i] for i in image_ids], coded)
    out.training["denoiser"] = out.postfilter.summary()
    if out.postfilter.kept:
        out.psnrs.update(zip(image_ids, out.postfilter.psnrs))
        out.crcs.update(zip(image_ids, out.postfilter.crcs))
    emit(progress, "denoise", 1, 1)
