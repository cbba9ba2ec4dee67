"""``pack`` with ``--codec pyramid``: train the latent-pyramid codec, code every image, fit the tables.

The steps mirror the autoencoder's (:mod:`archiver.codecs.autoencoder.pack`): train (:func:`_train`,
from the shipped base codec when there is one, :mod:`archiver.codecs.pyramid.base`), export the int8
synthesis (:func:`_export_decoder`), infer and refine each image's latent, measure it through the
ONNX runtime extract uses, spool and count it (:func:`_code_each`), then export the fixed-point
context network with the collection's tables (:func:`_export_entropy`); the writer range-codes.
Trained from a released base, an archive stores both models as their difference from it
(:mod:`archiver.codecs.pyramid.bases`) unless ``--self-contained``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .. import CodecDescription
from .read import pyramid_tiling, synthesis_runtime
from .versions import TAIL_GRAPH, TAIL_SINCE, WRITES
from ...collection.images import SourceImage, measure_decoded
from ...collection.pool import training_set
from ...config import PackConfig
from ...errors import InputError
from ...progress import ProgressCallback, emit
from ...time_budget import current as time_budget

__all__ = ["check_pyramid_options", "code_images_pyramid"]


def check_pyramid_options(cfg: PackConfig) -> None:
    """Refuse option combinations the pyramid codec cannot honour (before any work)."""
    tc = cfg.train
    if cfg.model_size not in ("auto", "custom"):
        raise InputError(f"--model-size {cfg.model_size} is not an option of --codec pyramid: its size is its base's")
    if tc.denoiser and (cfg.target_psnr or cfg.max_bytes):
        rate = "--target-psnr" if cfg.target_psnr else "--max-bytes"
        raise InputError(f"--denoiser cannot be combined with {rate} (--codec pyramid): the rate search "
                         "fixes each image's PSNR or the archive's bytes before a post-filter exists")  # fmt: skip


def code_images_pyramid(cfg: PackConfig, images: dict[int, SourceImage], checkpointer, spool_dir: Path,
                        progress: ProgressCallback | None, budget_rest: int = 0,
                        lpips_weights: str | None = None):  # fmt: skip
    """Train on ``images``, code each one; returns :class:`archiver.pack.CodedImages`. ``budget_rest``:
    with ``--max-bytes``, the guess of the archive's bytes besides model and latents; ``lpips_weights``:
    the folder of LPIPS weights ``--perceptual lpips`` needs."""
    from .plan import PYRAMID_PRESETS
    from ...pack import CodedImages

    spec = PYRAMID_PRESETS["default"]
    out = CodedImages()
    # --time-limit bounds the whole pack: training runs for its share (archiver.time_budget)
    result, base, delta = _train(time_budget(cfg, _pixels(images)).training(cfg), spec, images, checkpointer,
                                 progress, lpips_weights)  # fmt: skip
    if result.rank != 0:
        return None  # under torchrun every rank trains; rank 0 alone codes the images and writes
    out.training = result.summary()
    if cfg.appendable:  # append starts new images from the collection's own encoder
        from .appendable import store_encoder

        store_encoder(out, cfg, result.codec, base, delta)
    reference = _delta_reference(base) if delta else None
    if cfg.max_bytes:
        from .budget import code_for_budget

        code_for_budget(out, cfg, spec, result.codec, base, reference, images, spool_dir, progress, budget_rest)
        return out
    arrays = _export_decoder(out, cfg, spec, result.codec, base, reference)
    coder, latent_bits = _code_each(out, cfg, spec, result.codec, arrays, images, spool_dir, progress)
    _export_entropy(out, cfg, coder, reference)
    if cfg.train.denoiser:
        from .denoise import fit_pyramid_denoiser

        fit_pyramid_denoiser(out, cfg, spec, arrays, images, latent_bits, progress)
    return out


def _train(cfg: PackConfig, spec, images: dict[int, SourceImage], checkpointer, progress, lpips_weights=None):
    """Train (from the shipped base when there is one); returns (result, base or None, whether the
    archive stores its model as a difference from the base)."""
    import torch

    from .base import find_pyramid_base
    from .train import PyramidRecipe, train_pyramid

    torch.manual_seed(cfg.train.seed)
    base = find_pyramid_base(spec) if cfg.train.warm_start else None
    delta = _stores_delta(cfg, base)
    # From a base the full-size level has already learned its share: no coarse-first phase; a
    # stored difference from it is paid by the collection's pixels, so it is counted in the loss.
    recipe = (
        PyramidRecipe(coarse_steps=0, start=base.state_dict(), model_pixels=_pixels(images) if delta else 0)
        if base is not None else PyramidRecipe()
    )  # fmt: skip
    result = train_pyramid(
        training_set(list(images.values()), cfg.train.seed), cfg, spec,
        progress=lambda p: emit(progress, "train", p.step, 0, p), checkpointer=checkpointer,
        recipe=recipe, warm_start=base.summary() if base is not None else None, lpips_weights=lpips_weights,
    )  # fmt: skip
    return result, base, delta


def _pixels(images: dict[int, SourceImage]) -> int:
    return sum(im.width * im.height for im in images.values())


def decoder_arrays(cfg: PackConfig, codec, reference: dict | None, gain: float = 1.0) -> tuple[dict, tuple]:
    """(the int8 synthesis arrays with ``quant.steps`` times ``gain``, whole; the blob ``/model/decoder``
    stores: their difference from the base's when ``reference``)."""
    from .bases import to_delta
    from ...codec.weights import pack_arrays
    from .train import synthesis_arrays

    arrays = synthesis_arrays(codec, cfg.quality, reference["decoder"] if reference else None)
    arrays["quant.steps"] = (arrays["quant.steps"] * np.float32(gain)).astype(np.float32)
    return arrays, pack_arrays(to_delta(arrays, reference["decoder"]) if reference else arrays, cfg.zstd_level)


def entropy_blob(cfg: PackConfig, coder, reference: dict | None) -> tuple:
    """The blob ``/model/entropy`` stores for ``coder`` (context network and tables)."""
    from .bases import to_delta
    from ...codec.weights import pack_arrays

    entropy = coder.to_arrays()
    return pack_arrays(to_delta(entropy, reference["entropy"]) if reference else entropy, cfg.zstd_level)


def _export_decoder(out, cfg: PackConfig, spec, codec, base, reference: dict | None, gain: float = 1.0) -> dict:
    """The int8 synthesis (with the base's scales when stored as a difference; steps times ``gain``),
    its graph and the codec description into ``out``; returns the synthesis arrays (whole)."""
    from .bases import shipped_graph
    from ...model.crops import resolve_device
    from ...runtime.graph import graph_only
    from .graph import build_pyramid_graph

    out.training["device"] = str(resolve_device(cfg.train.device))
    arrays, out.model_blob = decoder_arrays(cfg, codec, reference, gain)
    shipped = shipped_graph(base.id) if reference else None
    if shipped is not None:  # the base's own graph: named, not stored
        out.onnx_graph = shipped[0]
        based_on = {"id": base.id, "sha256": base.sha256, "graph": shipped[1]}
    else:
        out.onnx_graph = graph_only(build_pyramid_graph(spec))
        based_on = {"id": base.id, "sha256": base.sha256} if reference else {}
    out.codec = CodecDescription("pyramid", WRITES, spec.to_dict(), based_on)
    return arrays


def _code_each(out, cfg: PackConfig, spec, codec, arrays: dict, images: dict[int, SourceImage], spool_dir: Path,
               progress):  # fmt: skip
    """Infer and refine each image's latent, measure it through the ONNX runtime extract uses,
    spool it and count it; returns (the coder with the collection's tables, the latents' estimated bits)."""
    from .coder import HistogramCounter, PackedPyramidCoder
    from ...codec.spool import LatentSpool
    from .anneal import Annealer
    from .train import context_net, int8_synthesis
    from .rate import TargetCoder
    from ...runtime.graph import attach_weights

    tile, halo = pyramid_tiling(spec.stride)
    runtime = synthesis_runtime(attach_weights(out.onnx_graph, arrays), spec.stride, out.codec.version)
    measuring = measuring_runtime(spec, arrays, runtime)
    synth = int8_synthesis(codec, arrays)
    spool = LatentSpool(spool_dir)
    refine = time_budget(cfg, _pixels(images)).refine_budget(cfg.train.refine_steps, _pixels(images))
    coder = PackedPyramidCoder(spec, context_net(codec))
    counter = HistogramCounter()
    target = TargetCoder(codec, synth, runtime, cfg, refine, tile, halo) if cfg.target_psnr else None
    unreached: list[tuple[SourceImage, float]] = []
    annealer = Annealer(refine, effort=cfg.train.effort)
    coded = _targeted(target, images, out, unreached) if target is not None else \
        _refined(cfg, codec, synth, images, refine, annealer, measuring, out, progress)  # fmt: skip
    for n, (i, latent) in enumerate(coded, 1):
        coder.count(latent, counter)
        spool.put(i, latent)
        emit(progress, "encode", n, len(images), {"psnr": out.psnrs[i]})
    out.training["refine"] = {**refine.summary(), "annealed": annealer.summary()}
    if target is not None:
        _target_summary(out, cfg, target, unreached)
        if cfg.target_baseline:
            _compare_uniform(out, cfg, target, images, coder, counter)
    out.latents = spool.latent  # the writer codes the latents in groups
    _with_tails(out, spec)
    tables = counter.tables()
    return coder.with_tables(tables), counter.ideal_bits(tables)


def _targeted(target, images: dict[int, SourceImage], out, unreached: list):
    """(key, latent) of each image coded for ``--target-psnr`` (its PSNR, CRC and gain into ``out``)."""
    for i, source in images.items():
        r = target.code(source.full())
        out.psnrs[i], out.crcs[i], out.gains[i] = r.psnr, r.crc, r.gain
        if not r.reached:
            unreached.append((source, r.psnr))
        yield i, r.latent


def _refined(cfg: PackConfig, codec, synth, images: dict[int, SourceImage], refine, annealer, runtime, out,
             progress=None):  # fmt: skip
    """(key, latent) of each image at the trained steps (its PSNR and CRC through ``runtime`` into
    ``out``): images of one size annealed together where the budget affords
    :data:`~archiver.codecs.pyramid.anneal.MIN_STEPS` (:mod:`archiver.codecs.pyramid.anneal`; its
    steps reported as ``anneal`` progress events: the batch's PSNR and bpp, and ``left_s``, the
    seconds of refinement left for the collection), else each searched
    (:func:`~archiver.codecs.pyramid.infer.refine_within`). Annealed images of at least
    :data:`~archiver.codecs.pyramid.tail_fit.TAIL_MIN_PIXELS` learn tails (``TrainConfig.image_tails``;
    not with ``--target-psnr`` or ``--max-bytes``): those kept go into ``out.image_codec``, and
    ``runtime`` (:func:`measuring_runtime`) decodes each image with its own."""
    import time

    import torch

    from .anneal import AnnealDevice, batches
    from .infer import encode_continuous, quantize_continuous, refine_within
    from ...model.refine import stop_at

    from .tail import tail_input
    from .tail_fit import ImageTails, learns_tails

    spec = codec.spec
    tile, halo = pyramid_tiling(spec.stride)
    tails_on = cfg.train.image_tails and not (cfg.target_psnr or cfg.max_bytes)
    on_device = AnnealDevice(codec, synth, cfg.train.device)
    for keys in batches({i: (s.height, s.width) for i, s in images.items()}):
        ims = [images[i].full() for i in keys]
        encoded = [encode_continuous(codec, im.rgb, cfg.quality) for im in ims]
        pixels = sum(im.height * im.width for im in ims)
        steps = annealer.steps_for(pixels, len(ims))
        datas = [b""] * len(ims)
        if steps:
            started = time.monotonic()
            tails = ImageTails(len(ims), spec.hidden[-1]) if learns_tails(tails_on, pixels // len(ims), spec) else None
            with stop_at(refine.stop_time()):
                y = on_device.anneal(torch.cat([e[0][0] for e in encoded]), torch.cat([e[0][1] for e in encoded]),
                                     encoded[0][1], cfg.train.lmbda, steps,
                                     on_step=lambda k, n, d: emit(progress, "anneal", k, n, {**d, "left_s": refine.time_left()}),
                                     tails=tails)  # fmt: skip
            annealer.done(pixels, len(ims), steps, time.monotonic() - started)
            zs = [y[k : k + 1] for k in range(len(ims))]
            datas = tails.kept if tails is not None else datas
        else:
            zs = [refine_within(refine, codec, synth, padded, z, valid, cfg.train.lmbda, tile, halo)[0]
                  for (padded, z), valid in encoded]  # fmt: skip
        for i, im, z, data in zip(keys, ims, zs, datas):
            latent = quantize_continuous(z)
            if data:
                out.image_codec[i] = data
            x = tail_input(latent, data, spec.hidden[-1])
            out.psnrs[i], out.crcs[i] = measure_decoded(runtime.decode(x, im.height, im.width), im)
            yield i, latent


def measuring_runtime(spec, arrays: dict, plain):
    """The runtime pack measures images through, tails or not (inputs from
    :func:`archiver.codecs.pyramid.tail.tail_input`): extract's
    (:func:`~archiver.codecs.pyramid.read.tail_runtime`) over ``plain``, the synthesis session."""
    from .read import tail_runtime

    return tail_runtime(plain, tail_graph(spec), arrays, spec, TAIL_SINCE)


@functools.lru_cache(maxsize=4)
def tail_graph(spec) -> bytes:
    """The tail graph of ``spec`` without weights (what ``/model/tail_onnx`` stores), built once."""
    from .graph import build_pyramid_graph
    from ...runtime.graph import graph_only

    return graph_only(build_pyramid_graph(spec, tail=True))


def measure_input(out, i: int, spec) -> np.ndarray:
    """Image ``i``'s input to :func:`measuring_runtime`: its latent with its gain and its tail."""
    from ...codec.gain import apply_gain
    from .tail import tail_input

    return tail_input(apply_gain(out.latents(i), out.gains.get(i, 0)), out.image_codec.get(i, b""), spec.hidden[-1])


def _with_tails(out, spec) -> None:
    """When some image keeps a tail: the archive is codec version 6 and stores the tail graph."""
    import dataclasses

    if any(out.image_codec.values()):
        out.codec = dataclasses.replace(out.codec, version=TAIL_SINCE)
        out.more_graphs[TAIL_GRAPH] = tail_graph(spec)
        out.training["tails"] = {"images": sum(1 for d in out.image_codec.values() if d),
                                 "bytes": sum(len(d) for d in out.image_codec.values())}  # fmt: skip


def _target_summary(out, cfg: PackConfig, target, unreached: list) -> None:
    """``--target-psnr``: the training summary says what the search did and which images stayed
    below the target (the version every pack writes allows per-image gains)."""
    gains = list(out.gains.values())
    out.training["target"] = {
        "psnr": cfg.target_psnr,
        "min_psnr": round(min(out.psnrs.values()), 4),
        "gain_codes": {"min": min(gains), "max": max(gains), "mean": round(float(np.mean(gains)), 3)},
        "decodes": target.decodes,
        "unreached": [{"path": str(s.path or ""), "psnr": round(p, 3)} for s, p in unreached],
    }


def _compare_uniform(out, cfg: PackConfig, target, images: dict, coder, counter) -> None:
    """Benchmarks: the per-image gains' latent bits and tables beside one gain for all
    (:func:`archiver.codecs.pyramid.rate.uniform_baseline`), in the training summary's ``target``."""
    from .rate import uniform_baseline

    reached = {i for i in images if out.psnrs[i] >= cfg.target_psnr}
    table_bytes = lambda c: len(entropy_blob(cfg, c, None)[0])  # noqa: E731  (whole: both sides alike)
    tables = counter.tables()
    out.training["target"]["per_image"] = {"latent_bits": round(counter.ideal_bits(tables)),
                                           "table_bytes": table_bytes(coder.with_tables(tables))}  # fmt: skip
    out.training["target"]["uniform"] = uniform_baseline(target, images, out.gains, reached, coder, table_bytes)


def _export_entropy(out, cfg: PackConfig, coder, reference: dict | None) -> None:
    """The context network and the collection's tables (as a difference from the base's network
    when ``reference``) into ``out``."""
    out.training["entropy_model"] = {"chosen": "pyramid-context", "tables": int((coder.inner.tables.lengths > 0).sum())}
    out.entropy_blob = entropy_blob(cfg, coder, reference)
    out.coder = coder


def _stores_delta(cfg: PackConfig, base) -> bool:
    """True when the archive stores its model as a difference from ``base``: a released base
    (:data:`archiver.codecs.pyramid.bases.BASES`; no reader would have another) and no ``--self-contained``."""
    from .bases import BASES

    return base is not None and not cfg.self_contained and BASES.get(base.id) == base.sha256


def _delta_reference(base) -> dict:
    """The base's reference arrays (:func:`archiver.codecs.pyramid.bases.pyramid_reference`)."""
    from .bases import base_file, pyramid_reference

    return pyramid_reference(base_file(base.id, base.sha256, base.path.parent))
