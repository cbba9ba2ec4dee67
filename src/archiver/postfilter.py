"""Pack's optional post-filter stage: train the denoiser on the collection, keep it if it pays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .codec.weights import pack_arrays
from .collection.images import SourceImage, measure_decoded
from .config import PackConfig
from .time_budget import current

__all__ = ["PostFilter", "fit_postfilter"]


@dataclass
class PostFilter:
    """Outcome of the post-filter stage; ``blob``/``manifest``/``graph`` are set only if it is kept."""

    kept: bool
    gain_db: float
    bytes: int
    steps: int
    stop_reason: str
    psnrs: list[float] = field(default_factory=list)
    crcs: list[int] = field(default_factory=list)
    blob: bytes = b""
    manifest: list = field(default_factory=list)
    graph: bytes = b""

    def summary(self) -> dict:
        """What the archive's training summary says about it."""
        return {"kept": self.kept, "gain_db": round(self.gain_db, 4), "bytes": self.bytes,
                "steps": self.steps, "stop_reason": self.stop_reason}  # fmt: skip


def fit_postfilter(
    cfg: PackConfig,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    decoded: Callable[[], Iterable[tuple[np.ndarray, SourceImage]]],
    psnrs: list[float],
    coded_bytes: int,
    pass_seconds: float | None = None,
) -> PostFilter:
    """Train the denoiser on (reconstruction, original) ``pairs`` (whole images or tiles) and measure
    it through ONNX Runtime on every image ``decoded()`` yields (reconstruction, source), in the order
    of ``psnrs`` (their PSNR without it).

    ``coded_bytes`` is what the images cost without it (model + latents): its own bytes are priced
    against that by :func:`archiver.model.denoiser.worth_keeping`. ``pass_seconds``: what the pass that
    decoded the training pairs took, when the caller made one (it prices the verdict's pass).
    """
    from .model.denoiser import DenoiserConfig, train_denoiser, worth_keeping
    from .model.int8 import quantize_weights
    from .runtime.denoiser_graph import build_denoiser_graph
    from .runtime.graph import attach_weights, graph_only
    from .runtime.session import OnnxDenoiser

    dcfg = DenoiserConfig()
    budget = current(cfg).denoiser_seconds(pass_seconds)  # its share of --time-limit (archiver.time_budget)
    net, steps, reason = train_denoiser(pairs, budget, cfg.train.seed, dcfg)
    arrays = quantize_weights(net)
    blob, manifest = pack_arrays(arrays, cfg.zstd_level)
    graph = graph_only(build_denoiser_graph(dcfg.channels, dcfg.blocks))
    runtime = OnnxDenoiser(attach_weights(graph, arrays), "cpu")
    new_psnrs, crcs = [], []
    for rec, src in decoded():
        psnr, crc = measure_decoded(runtime.apply(rec), src)
        new_psnrs.append(psnr)
        crcs.append(crc)
    gain = float(np.mean(new_psnrs) - np.mean(psnrs))
    cost = len(blob) + len(graph)
    result = PostFilter(worth_keeping(gain, cost, coded_bytes), gain, cost, steps, reason)
    if result.kept:
        result.psnrs, result.crcs, result.blob, result.manifest, result.graph = new_psnrs, crcs, blob, manifest, graph
    return result
