"""``pack --codec pyramid --denoiser``: the optional post-filter, trained on the pyramid's own decoded
images (through the ONNX runtime extract uses) against the originals, and kept only where it pays
for its bytes (:func:`archiver.postfilter.fit_postfilter`, the autoencoder's stage). Extraction
applies a stored post-filter whatever the codec (:class:`archiver.decode.ArchiveDecoder`), so a
kept one replaces every image's measured PSNR and pixel CRC, as the autoencoder's does.

Its training time is ``cfg.train.denoiser_time``, or the denoiser's share of ``--time-limit``
(:meth:`archiver.time_budget.TimeBudget.denoiser_seconds`). The images are decoded from the spool twice (once for the training pairs, once for the
verdict): memory holds the pairs' pool, never the collection's pixels.
"""

from __future__ import annotations

import time

from ...collection.images import SourceImage
from ...config import PackConfig
from ...progress import emit

__all__ = ["fit_pyramid_denoiser", "keep_denoiser"]


def fit_pyramid_denoiser(out, cfg: PackConfig, spec, arrays: dict, images: dict[int, SourceImage],
                         latent_bits: float, progress) -> None:  # fmt: skip
    """Train the post-filter on ``out``'s coded images (``out.latents``, ``out.gains``; ``arrays``: the
    int8 synthesis), decide on it against ``latent_bits`` (their estimated coded size) plus the
    stored models, and record it in ``out`` (``postfilter``; ``training["denoiser"]``; the PSNRs and
    CRCs when kept)."""
    from ...collection.pool import PairPool
    from ...postfilter import fit_postfilter
    from ...runtime.graph import attach_weights
    from .pack import measure_input, measuring_runtime
    from .read import synthesis_runtime

    plain = synthesis_runtime(attach_weights(out.onnx_graph, arrays), spec.stride, out.codec.version)
    runtime = measuring_runtime(spec, arrays, plain)
    ids = list(images)

    def decoded():  # every image as extract decodes it (without a post-filter), with its source
        for i in ids:
            im = images[i].full()
            yield runtime.decode(measure_input(out, i, spec), im.height, im.width), im

    emit(progress, "denoise", 0, 1)
    pairs = PairPool([images[i].height * images[i].width for i in ids], cfg.train.seed)
    started = time.monotonic()
    for pixels, im in decoded():
        pairs.add(pixels, im.rgb)
    coded = len(out.model_blob[0]) + len(out.entropy_blob[0]) + int(latent_bits / 8)
    out.postfilter = fit_postfilter(cfg, pairs.pairs, decoded, [out.psnrs[i] for i in ids], coded,
                                    time.monotonic() - started)
    out.training["denoiser"] = out.postfilter.summary()
    if out.postfilter.kept:
        out.psnrs.update(zip(ids, out.postfilter.psnrs))
        out.crcs.update(zip(ids, out.postfilter.crcs))
    emit(progress, "denoise", 1, 1)


def keep_denoiser(writer, reader, zstd_level: int):
    """``append``: copy the archive's post-filter, if it has one, into ``writer`` (the old images keep
    their pixels); returns what new images' decoded pixels go through before they are measured, as
    extract will restore them (the identity when there is none)."""
    if not reader.has_denoiser:
        return lambda pixels: pixels
    from ...codec.weights import pack_arrays
    from ...runtime.graph import OPSET, attach_weights
    from ...runtime.session import OnnxDenoiser

    arrays, graph = reader.model_arrays("denoiser"), reader.onnx_graph("denoiser_onnx")
    writer.write_denoiser(*pack_arrays(arrays, zstd_level), graph, OPSET, zstd_level)
    return OnnxDenoiser(attach_weights(graph, arrays), "cpu").apply
