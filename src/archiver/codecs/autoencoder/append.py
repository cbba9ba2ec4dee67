"""``append`` on an autoencoder archive: code new images with its stored int8 decoder and tables.

The archive keeps its decoder and entropy tables, and its encoder when it was packed ``appendable``.
Each new image's latent is then the encoder's, refined for :data:`ENCODER_STEPS` steps against the
int8 decoder. Without a stored encoder, an archive whose training started from a shipped codec
(``training.warm_start``, same SHA-256 as a file this archiver ships) starts from that codec's encoder
and refines for :data:`WARM_ENCODER_STEPS` steps; otherwise the latent is searched from nothing for
:data:`SEARCH_STEPS` steps (:func:`archiver.codecs.autoencoder.search.search_latent`). Either way it
is coded with the unchanged tables.
"""

from __future__ import annotations

from ...codec.weights import pack_arrays
from ...collection.images import measure_decoded
from ...config import PackConfig
from ...container.format import EntryKind
from ...container.reader import ArchiveReader
from ...container.writer import ArchiveWriter
from ...errors import InputError
from ...pack import CodedImages
from ...progress import ProgressCallback, emit

__all__ = ["code_new_autoencoder", "SEARCH_STEPS", "ENCODER_STEPS", "WARM_ENCODER_STEPS"]

#: Optimisation steps per new image's latent without an encoder (each one a decoder forward and
#: backward pass).
SEARCH_STEPS = 300
#: Refinement steps per new image from the stored encoder's latent (``pack --appendable``); pack's
#: own ``refine_steps`` refinement is of the same kind.
ENCODER_STEPS = 30
#: Refinement steps from the shipped warm-start encoder's latent: pack fine-tuned the decoder away
#: from that encoder, so its latent is a rougher start than a stored encoder's. Measured on 4 small
#: images re-appended to their own archive (packed at 27.05 dB): 30 / 100 / 300 steps gave
#: 20.8 / 22.5 / 25.2 dB from this start against 15.9 / 18.8 / 23.6 dB searched from nothing.
WARM_ENCODER_STEPS = 300



def code_new_autoencoder(writer: ArchiveWriter, reader: ArchiveReader, cfg: PackConfig, images: dict,
                          steps: int | None, use_encoder: bool, progress: ProgressCallback | None):  # fmt: skip
    """Write the autoencoder archive's model into ``writer`` and code ``images`` with it; returns
    (method, steps, :class:`CodedImages` of the new images)."""
    from ...codec.entropy import LatentCoder
    from .model import Encoder
    from .inference import int8_decoder
    from ...model.int8 import load_quantized
    from .search import search_latent
    from ...runtime.graph import OPSET, attach_weights
    from ...runtime.session import OnnxDecoder, OnnxDenoiser

    has_encoder = reader.has_encoder
    warm = _shipped_start(reader, cfg) if use_encoder and not has_encoder and images else None
    method = "encoder" if has_encoder and use_encoder else "warm-encoder" if warm is not None else "search"
    default_steps = {"encoder": ENCODER_STEPS, "warm-encoder": WARM_ENCODER_STEPS, "search": SEARCH_STEPS}
    steps = default_steps[method] if steps is None else steps
    if steps == 0 and method == "search":
        raise InputError(
            f"{reader.path}: --steps 0 needs an encoder to start from (pack --appendable, or a warm start "
            "this archiver ships); this archive has none"
        )
    new_latents: dict = {}
    coded = CodedImages(latents=new_latents.__getitem__)
    arrays, tables, graph, denoiser = None, None, b"", None
    if any(e.kind is EntryKind.IMAGE for e in reader.entries):  # the model travels unchanged
        arrays, tables, graph = reader.model_arrays(), reader.tables(), reader.codec.graph()
        writer.write_model(*pack_arrays(arrays, cfg.zstd_level))
        if has_encoder:  # the archive stays appendable
            encoder_arrays = reader.model_arrays("encoder")
            writer.write_model(*pack_arrays(encoder_arrays, cfg.zstd_level), name="encoder")
        writer.write_onnx(graph, OPSET, cfg.zstd_level)
        writer.write_tables(tables)
        if reader.has_denoiser:
            den_arrays, den_graph = reader.model_arrays("denoiser"), reader.onnx_graph("denoiser_onnx")
            writer.write_denoiser(*pack_arrays(den_arrays, cfg.zstd_level), den_graph, OPSET, cfg.zstd_level)
            denoiser = OnnxDenoiser(attach_weights(den_graph, den_arrays), "cpu")
    if images:
        import torch

        decoder = int8_decoder(cfg.model, arrays)
        encoder = load_quantized(Encoder(cfg.model), encoder_arrays).eval() if method == "encoder" else warm
        runtime = OnnxDecoder(attach_weights(graph, arrays), "cpu")
        coder = LatentCoder(tables)
        torch.manual_seed(cfg.train.seed)
        for n, (i, light) in enumerate(images.items(), 1):
            im = light.full()  # beyond the resident budget, images were released after the scan
            latent = search_latent(decoder, tables, im.rgb, cfg.train.lmbda, steps, min_size=reader.min_size, encoder=encoder)
            pixels = runtime.decode(latent, im.height, im.width)
            if denoiser is not None:
                pixels = denoiser.apply(pixels)
            coded.psnrs[i], coded.crcs[i] = measure_decoded(pixels, im)
            coded.bitstreams[i], new_latents[i] = coder.encode(latent), latent
            emit(progress, "encode", n, len(images), {"psnr": coded.psnrs[i]})
    return method, steps, coded


def _shipped_start(reader: ArchiveReader, cfg: PackConfig):
    """The encoder of the shipped codec the archive's training started from (float, eval mode), or
    None when it started from random weights or this archiver ships different weights."""
    started = (reader.training.get("warm_start") or {}).get("sha256")
    if not started:
        return None
    from .model import Autoencoder
    from ...model.prior import ChannelPrior
    from .warmstart import find_warm_start

    shipped = find_warm_start(cfg.model)
    if shipped is None or shipped.sha256 != started:
        return None
    model = Autoencoder(cfg.model)
    shipped.load_into(model, ChannelPrior(cfg.model.latent_channels))
    return model.encoder.eval()
