"""``append`` for ``pyramid`` archives: new images coded with the archive's own synthesis and
context network, unchanged (stored whole or as their difference from a base codec, as they were).

An archive packed ``--appendable`` stores its own encoder (:mod:`archiver.codecs.pyramid.appendable`):
a new image's grids start from it and are refined for its ``ENCODER_STEPS`` steps through the
archive's int8 synthesis, with the archive's context network as the rate. Otherwise, when its
training started from a base codec this archiver ships (same SHA-256 as ``training.warm_start``),
they start from that base's encoder and are refined for :data:`BASE_ENCODER_STEPS` steps; else they
are searched from zero for :data:`SEARCH_STEPS` steps. The residual tables are then counted again
over the old images' latents and the new ones, and every group is range-coded with them: the old
images' latents, and so their pixels, do not change, and no new residual can fall outside a table.
"""

from __future__ import annotations

import numpy as np

from .read import pyramid_tiling, synthesis_runtime
from ...collection.images import SourceImage, measure_decoded
from ...config import PackConfig
from ...container.reader import ArchiveReader
from ...container.writer import ArchiveWriter
from ...errors import InputError
from ...progress import ProgressCallback, emit

__all__ = ["code_new_pyramid", "BASE_ENCODER_STEPS", "SEARCH_STEPS"]

#: Refinement steps per new image from the base encoder's grids (pack fine-tuned its synthesis
#: away from that encoder, so the start is rougher than pack's own).
BASE_ENCODER_STEPS = 100
#: Refinement steps per new image from all-zero grids (no shipped base to start from).
SEARCH_STEPS = 300


def code_new_pyramid(writer: ArchiveWriter, reader: ArchiveReader, cfg: PackConfig, images: dict[int, SourceImage],
                     steps: int | None, use_encoder: bool, progress: ProgressCallback | None):  # fmt: skip
    """Write the archive's model into ``writer`` and code ``images``; returns (method, steps,
    :class:`archiver.pack.CodedImages` of the new images)."""
    from .appendable import ENCODER_STEPS, keep_encoder, own_start
    from .denoise import keep_denoiser
    from .coder import HistogramCounter
    from ...codec.weights import pack_arrays
    from ...container.format import EntryKind
    from ...pack import CodedImages
    from ...runtime.graph import OPSET, attach_weights
    from .versions import TAIL_GRAPH, TAIL_SINCE

    side = reader.codec
    spec = side.spec
    stored_decoder, stored_entropy = reader.model_arrays("decoder"), reader.model_arrays("entropy")
    decoder = side.model_arrays("decoder")
    graph = side.graph()
    writer.write_model(*pack_arrays(stored_decoder, cfg.zstd_level))
    if "graph" not in side.desc.base:  # else the base ships it (codec version 3)
        writer.write_onnx(graph, OPSET, cfg.zstd_level)
    if side.desc.version >= TAIL_SINCE:  # its images' tails decode through the archive's tail graph
        writer.write_onnx(reader.onnx_graph(TAIL_GRAPH), OPSET, cfg.zstd_level, name=TAIL_GRAPH)
    writer.set_json("codec", side.desc.to_dict())
    counting = side.coder()  # the archive's context network (and its old tables, replaced below)
    net = counting.inner.net
    keep_encoder(writer, reader, cfg.zstd_level)  # an appendable archive stays appendable
    post = keep_denoiser(writer, reader, cfg.zstd_level)  # and its post-filter: new images measured through it
    own = own_start(reader, spec) if use_encoder and images and reader.has_encoder else None
    start = own if own is not None else _shipped_base(reader, spec) if use_encoder and images else None
    method = "encoder" if own is not None else "base-encoder" if start is not None else "search"
    if steps is None:
        steps = {"encoder": ENCODER_STEPS, "base-encoder": BASE_ENCODER_STEPS, "search": SEARCH_STEPS}[method]
    if steps == 0 and method == "search":
        raise InputError(
            f"{reader.path}: --steps 0 needs an encoder to start from (a base codec this archiver ships); this archive has none"
        )
    new_latents: dict[int, np.ndarray] = {}
    coded = CodedImages(latents=new_latents.__getitem__)
    counter = HistogramCounter()
    if images:
        runtime = synthesis_runtime(attach_weights(graph, decoder), spec.stride, side.desc.version)
        latent_of = _refiner(spec, decoder, net, start, cfg, steps)
        for n, (i, light) in enumerate(images.items(), 1):
            im = light.full()
            latent = latent_of(im.rgb)
            coded.psnrs[i], coded.crcs[i] = measure_decoded(post(runtime.decode(latent, im.height, im.width)), im)
            new_latents[i] = latent
            counting.count(latent, counter)
            emit(progress, "encode", n, len(images), {"psnr": coded.psnrs[i]})
    # The old latents are decoded here to count them and again when they are copied (the tables
    # must be complete before the writer codes the first group): twice the entropy decoding, but
    # memory stays bounded whatever the archive's size.
    for entry in reader.entries:
        if entry.kind is EntryKind.IMAGE:
            counting.count(reader.read_image(entry)[0], counter)
    coder = counting.with_tables(counter.tables())
    for i, latent in new_latents.items():  # the new images coded alone: the report's latent bytes
        coded.bitstreams[i] = coder.encode(latent)  # type: ignore[index]
    arrays = {k: v for k, v in stored_entropy.items() if not k.startswith("tables.")}
    arrays.update({f"tables.{k}": v for k, v in coder.inner.tables.to_arrays().items()})  # type: ignore[union-attr]
    writer.write_entropy(*pack_arrays(arrays, cfg.zstd_level), coder)
    return method, steps, coded


def _shipped_base(reader: ArchiveReader, spec):
    """The float state of the base codec the archive's training started from, when this archiver
    ships exactly that file; else None."""
    from .base import find_pyramid_base

    started = (reader.training.get("warm_start") or {}).get("sha256")
    base = find_pyramid_base(spec) if started else None
    return base.state_dict() if base is not None and base.sha256 == started else None


def _refiner(spec, decoder: dict, net, start: dict | None, cfg: PackConfig, steps: int):
    """A function RGB → a new image's packed integer latent: the base encoder's grids (or zeros),
    refined through the archive's int8 synthesis with its context network as the rate."""
    import torch

    from .model import PyramidCodec
    from .infer import infer_packed
    from .train import int8_synthesis

    class ZeroEncoder(torch.nn.Module):  # all-zero grids of the right shapes: a search from nothing
        def forward(self, x):
            n, _, h, w = x.shape
            return [torch.zeros(n, c, h >> level, w >> level) for level, c in enumerate(spec.channels)]

    codec = PyramidCodec(spec)
    if start is not None:
        codec.load_state_dict(start)
    else:
        codec.encoder = ZeroEncoder()
    with torch.no_grad():  # the rate model of refinement: the archive's network, in float
        for phase, layers in enumerate(net.layers):
            linears = [m for m in codec.context.mlps[phase] if isinstance(m, torch.nn.Linear)]
            for linear, (w, b) in zip(linears, layers):
                linear.weight.copy_(torch.from_numpy(w.astype(np.float32) / 256.0))
                linear.bias.copy_(torch.from_numpy(b.astype(np.float32) / 256.0))
        codec.log_steps[cfg.quality - 1].copy_(torch.log(torch.from_numpy(decoder["quant.steps"].astype(np.float32))))
    codec.eval()
    synth = int8_synthesis(codec, decoder)
    tile, halo = pyramid_tiling(spec.stride)
    torch.manual_seed(cfg.train.seed)
    return lambda rgb: infer_packed(codec, synth, rgb, cfg.quality, cfg.train.lmbda, steps, tile, halo)
