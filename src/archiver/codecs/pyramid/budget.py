"""``pack --codec pyramid --max-bytes N``: code the collection so that the whole archive is at most N
bytes and at most :data:`archiver.codecs.pyramid.rate.BUDGET_SLACK` under it (the method:
:mod:`archiver.codecs.pyramid.rate`).

:func:`check_budget` refuses, before training, a budget below the model and the rest of the
archive alone. :func:`code_for_budget` fits one gain on the encoder's latents, refines every
latent at that gain, fits again and codes; :func:`write_within_budget` writes the archive to a
scratch file, and while it is over N (or too far under) refits with the rest it really had, then
moves it into place: an archive over the budget never appears at the output path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import zstandard

from .rate import BUDGET_SLACK, BudgetError, BudgetFit
from ...progress import emit
from ...time_budget import current as time_budget

__all__ = ["check_budget", "rest_guess", "code_for_budget", "write_within_budget", "BUDGET_WRITES"]

#: Archive writes at most (each after a refit with the rest the previous one measured); two suffice
#: when the rest does not move with the gain.
BUDGET_WRITES = 4
#: An archive's bytes besides model and latents (HDF5 structure, the documents: config, training
#: summary with its history, codec, summary; the ONNX graph, the index) at the least, and per entry
#: (index columns, group extras). Measured: 2,644 bytes on a pyramid archive of 6 images of 96²
#: and one text file (container 1,539, documents 731). Both the check before training and the
#: first fit use this lower bound: a guess too high could refuse a budget that fits, one too low
#: only costs a second write (:func:`write_within_budget` refits with the rest it measured).
REST_BYTES, REST_BYTES_PER_ENTRY = 2_000, 8


def rest_guess(items, classes) -> int:
    """Bytes besides model and latents at the least, before coding: the constants above and each
    byte-exact file compressed at zstd level 1, halved (pack stores it at level 19)."""
    from ...collection.images import SourceImage
    from ...container.format import EntryKind

    fast = zstandard.ZstdCompressor(level=1)
    files = 0
    for i, item in enumerate(items):
        if item.kind is EntryKind.FILE and not isinstance(classes.get(i), SourceImage):
            try:
                files += len(fast.compress(item.path.read_bytes()))
            except OSError:
                pass  # pack names the file when it reads it
    return REST_BYTES + REST_BYTES_PER_ENTRY * len(items) + files // 2


def check_budget(cfg, items, classes) -> int:
    """Before training: :class:`BudgetError` if ``cfg.max_bytes`` cannot hold the model (as small as
    it can be stored) and the rest of the archive; returns the rest's guess (:func:`rest_guess`)."""
    rest, model = rest_guess(items, classes), minimum_model_bytes(cfg)
    if cfg.max_bytes < rest + model:
        raise BudgetError(
            f"--max-bytes {cfg.max_bytes:,} is too small: the model ({model:,} bytes at the least) and the "
            f"rest of the archive (index, documents, files kept as they are: {rest:,} at the least) take "
            f"{rest + model:,} bytes before any image"
        )
    return rest


def minimum_model_bytes(cfg) -> int:
    """The fewest bytes ``/model/decoder`` and ``/model/entropy`` can take: an unchanged base's
    difference when the archive stores one, else the base's (or an untrained codec's) whole model
    without tables."""
    from .bases import to_delta
    from .plan import PYRAMID_PRESETS
    from ...codec.weights import pack_arrays
    from .model import PyramidCodec
    from .base import find_pyramid_base
    from .train import context_net, synthesis_arrays
    from .pack import _delta_reference, _stores_delta

    spec = PYRAMID_PRESETS["default"]
    base = find_pyramid_base(spec) if cfg.train.warm_start else None
    if base is not None and _stores_delta(cfg, base):
        reference = _delta_reference(base)
        return sum(len(pack_arrays(to_delta(a, a), cfg.zstd_level)[0]) for a in reference.values())
    codec = PyramidCodec(spec)
    if base is not None:
        codec.load_state_dict(base.state_dict())
    entropy = {f"context.{k}": v for k, v in context_net(codec).to_arrays().items()}
    return sum(len(pack_arrays(a, cfg.zstd_level)[0]) for a in (synthesis_arrays(codec, cfg.quality), entropy))


def code_for_budget(out, cfg, spec, codec, base, reference, images: dict, spool_dir: Path, progress, rest: int) -> None:
    """Fill ``out`` (:class:`archiver.pack.CodedImages`) for ``cfg.max_bytes``, with ``out.refit``;
    ``rest``: the guess of the archive's other bytes (:func:`check_budget`)."""
    import torch

    from .coder import PackedPyramidCoder
    from .infer import encode_continuous, padded_image, refine_within
    from .train import context_net, int8_synthesis
    from .read import pyramid_tiling
    from .pack import _export_decoder, decoder_arrays, entropy_blob

    tile, halo = pyramid_tiling(spec.stride)
    fit = BudgetFit(
        spool_dir.parent / "continuous", PackedPyramidCoder(spec, context_net(codec)),
        lambda coder: len(entropy_blob(cfg, coder, reference)[0]),
        lambda gain: len(decoder_arrays(cfg, codec, reference, gain)[1][0]),
    )  # fmt: skip
    for n, (i, source) in enumerate(images.items(), 1):
        (_, z), _ = encode_continuous(codec, source.full().rgb, cfg.quality)
        fit.put(i, z)
        emit(progress, "encode", n, len(images))
    log2_gain = fit.fit(cfg.max_bytes, rest)[0]
    synth = int8_synthesis(codec, decoder_arrays(cfg, codec, reference)[0])
    pixels = sum(s.width * s.height for s in images.values())
    refine = time_budget(cfg, pixels).refine_budget(cfg.train.refine_steps, pixels)  # what --time-limit leaves
    for n, (i, source) in enumerate(images.items(), 1):
        padded, valid = padded_image(codec, source.full().rgb)
        z = torch.from_numpy(fit.z(i))  # the encoder's latent, kept by the first pass
        # The search alone (relax=0): these latents are quantized again at the gain the refit finds
        # (the rest guessed before is a lower bound), and relaxed ones made the bytes jump by 1.8 %
        # within 0.001 octave of that gain in a 4-image test, too much to land within BUDGET_SLACK.
        fit.put(i, refine_within(refine, codec, synth, padded, z, valid, cfg.train.lmbda, tile, halo,
                                 2.0**log2_gain, relax=0)[0])  # fmt: skip
        emit(progress, "refine", n, len(images))
    out.training["refine"] = refine.summary()

    def refit(rest: int) -> None:
        log2_gain, out.predicted_bytes, coder = fit.fit(cfg.max_bytes, rest)
        arrays = _export_decoder(out, cfg, spec, codec, base, reference, 2.0**log2_gain)
        _code_at(out, cfg, spec, fit, arrays, images, spool_dir, 2.0**log2_gain, coder, reference, progress)
        out.training["budget"] = {"max_bytes": cfg.max_bytes, "log2_gain": round(log2_gain, 5),
                                  "rest": rest, "trials": len(fit.trials)}  # fmt: skip

    refit(rest)
    out.refit = refit


def _code_at(out, cfg, spec, fit: BudgetFit, arrays: dict, images: dict, spool_dir: Path, gain: float, coder,
             reference, progress) -> None:  # fmt: skip
    """Quantize every kept latent at ``gain`` (already in ``arrays``' steps), measure it through the
    runtime and spool it; ``coder`` (with the tables the fit counted at that gain) into ``out``."""
    from ...codec.spool import LatentSpool
    from ...collection.images import measure_decoded
    from .read import pyramid_tiling
    from .pack import _export_entropy
    from ...runtime.graph import attach_weights
    from ...runtime.session import OnnxDecoder

    tile, halo = pyramid_tiling(spec.stride)
    runtime = OnnxDecoder(attach_weights(out.onnx_graph, arrays), "cpu", None, spec.stride, tile, halo)
    spool = LatentSpool(spool_dir)
    for n, (i, source) in enumerate(images.items(), 1):
        im = source.full()
        latent = fit.quantized(i, gain)
        out.psnrs[i], out.crcs[i] = measure_decoded(runtime.decode(latent, im.height, im.width), im)
        spool.put(i, latent)
        emit(progress, "measure", n, len(images), {"psnr": out.psnrs[i]})
    out.latents = spool.latent
    _export_entropy(out, cfg, coder, reference)


def write_within_budget(write: Callable[[Path], int], coded, max_bytes: int, output: Path) -> int:
    """Write with ``write(path) -> bytes`` to a scratch file next to ``output`` until the archive is
    at most ``max_bytes`` and at most :data:`BUDGET_SLACK` under it (refitting ``coded`` with the
    rest each write measured), then move it to ``output``; returns its size."""
    scratch = output.with_name(f".{output.name}.budget")
    try:
        for attempt in range(BUDGET_WRITES):
            size = write(scratch)
            within = size <= max_bytes
            if coded.refit is None or (within and size >= max_bytes * (1 - BUDGET_SLACK)):
                break
            if attempt == BUDGET_WRITES - 1:
                break
            coded.refit(size - coded.predicted_bytes)
        if not within:
            raise BudgetError(f"--max-bytes {max_bytes:,}: the archive still takes {size:,} bytes after "
                              f"{BUDGET_WRITES} fits; nothing was written")  # fmt: skip
        os.replace(scratch, output)
        return size
    finally:
        scratch.unlink(missing_ok=True)
