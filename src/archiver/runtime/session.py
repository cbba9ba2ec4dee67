"""Running the decoder graph with ONNX Runtime: provider choice, threads, batches of equal shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np

from ..codec.geometry import STRIDE, tiles
from ..errors import InputError
from .proto import DENOISER_INPUT, INPUT, OUTPUT, fold_dequantize, model_bytes

if TYPE_CHECKING:
    import onnx

__all__ = ["PROVIDER_ALIASES", "resolve_providers", "OnnxDecoder", "OnnxDenoiser", "TILE", "HALO"]

#: A model with its weights: serialized ModelProto bytes (:func:`archiver.runtime.proto.attach_weights`),
#: or an ``onnx.ModelProto`` from the graph builders. This module never imports ``onnx``.
Model = Union[bytes, "onnx.ModelProto"]

#: Latents larger than TILE × TILE positions (512 × 512 px at stride 16) are decoded tile by tile.
TILE = 32
#: Latent positions of context added around each tile: more than the decoder's receptive radius
#: (about 5 positions), so every kept output pixel sees exactly the inputs it sees in one piece.
HALO = 6

#: Short names accepted by ``--provider`` and the ONNX Runtime providers they mean, best first for auto.
PROVIDER_ALIASES: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_AUTO_ORDER = ("cuda", "rocm", "dml", "coreml", "qnn", "openvino", "cpu")


def resolve_providers(name: str = "auto") -> list[str]:
    """ONNX Runtime provider list for ``name`` (``auto``, a short name above, or a full provider name)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if name == "auto":
        best = next(PROVIDER_ALIASES[a] for a in _AUTO_ORDER if PROVIDER_ALIASES[a] in available)
        return [best] + (["CPUExecutionProvider"] if best != "CPUExecutionProvider" else [])
    full = PROVIDER_ALIASES.get(name.lower(), name)
    if full not in available:
        raise InputError(f"--provider {name}: {full} is not available here (available: {', '.join(available)})")
    return [full] + (["CPUExecutionProvider"] if full != "CPUExecutionProvider" else [])


def _session(model: Model, providers: list[str], threads: int | None, spin: bool = True, layout: bool = True):
    """An ONNX Runtime session for ``model`` with its constant int8 weights folded to float32.

    ``spin=False`` stops the intra-op workers from busy-waiting between runs (for a process that
    overlaps runs with other threads' work and never forks: ``extract``). ``layout=False`` leaves
    out ONNX Runtime's layout optimizations: by default its convolutions run in the blocked NCHWc
    layout (channels in blocks of 8 on AVX2), converted back and forth around every residual Add,
    a 3-channel 3×3 layer padded to 8 channels. A synthesis of three 1×1 layers and two 3×3
    residual ones on 8 crops of 256² (one thread, 2 cores) ran 77–88 ms with them and 54–57 ms
    without. The same function summed in another order: an output rounded at .5 may move by one,
    so a codec chooses per version."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    if not layout:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if not spin:
        # Spinning workers took the cores of extract's entropy and PNG threads (48-photo album,
        # default codec of 2026-12, 2 cores, six alternating fresh extracts each: median 8.6 s spinning,
        # 7.0 s not). Not the default: such a session hangs when a forked child (a DataLoader
        # worker) drops its parent's copy.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(fold_dequantize(model_bytes(model)), options, providers=providers)


class OnnxDecoder:
    """Decodes integer latents to uint8 RGB with ONNX Runtime."""

    def __init__(
        self, model: Model, provider: str = "auto", threads: int | None = None,
        stride: int = STRIDE, tile: int = TILE, halo: int = HALO, spin: bool = True, layout: bool = True,
    ) -> None:  # fmt: skip
        self.providers = resolve_providers(provider)
        self.session = _session(model, self.providers, threads, spin, layout)
        #: pixels per latent position; latent positions per tile side and of context around a tile
        self.stride, self.tile, self.halo = stride, tile, halo

    def decode_batch(self, latents: np.ndarray) -> np.ndarray:
        """(N, C, h, w) integer latents → (N, stride·h, stride·w, 3) uint8 pixels (not cropped)."""
        out = self.session.run([OUTPUT], {INPUT: latents.astype(np.float32)})[0]
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1))

    def decode(self, latent: np.ndarray, height: int, width: int) -> np.ndarray:
        """One (C, h, w) latent → (height, width, 3) uint8, the padding cropped off.

        Latents over ``tile`` × ``tile`` positions are decoded in tiles with ``halo`` positions of
        overlap, keeping each tile's centre, so memory stays bounded whatever the image size. Whether
        an image is tiled depends only on its size, so pack and extract always take the same path.
        """
        _, h, w = latent.shape
        stride, size, halo = self.stride, self.tile, self.halo
        if h <= size and w <= size:
            return self.decode_batch(latent[None])[0, :height, :width]
        out = np.empty((h * stride, w * stride, 3), dtype=np.uint8)
        for y0, y1, x0, x1, ya, yb, xa, xb in tiles(h, w, size, halo):
            tile = self.decode_batch(latent[None, :, ya:yb, xa:xb])[0]
            oy, ox = (y0 - ya) * stride, (x0 - xa) * stride
            out[y0 * stride : y1 * stride, x0 * stride : x1 * stride] = tile[
                oy : oy + (y1 - y0) * stride, ox : ox + (x1 - x0) * stride
            ]
        return out[:height, :width]


#: The post-filter runs on tiles of at most this many pixels a side, with this many pixels of overlap
#: (its receptive radius is 6 px; channel attention pools over the tile, so tiling depends on the
#: image size only and pack and extract tile alike).
FILTER_TILE = 512
FILTER_HALO = 8


class OnnxDenoiser:
    """Runs the post-filter graph on decoded uint8 images."""

    def __init__(self, model: Model, provider: str = "auto", threads: int | None = None) -> None:
        self.input = DENOISER_INPUT
        self.session = _session(model, resolve_providers(provider), threads)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT], {self.input: np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])})[0]
        return np.ascontiguousarray(out[0].transpose(1, 2, 0))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 → filtered (H, W, 3) uint8, tile by tile for large images."""
        h, w = rgb.shape[:2]
        if h <= FILTER_TILE and w <= FILTER_TILE:
            return self._run(rgb)
        out = np.empty_like(rgb)
        for y0, y1, x0, x1, ya, yb, xa, xb in tiles(h, w, FILTER_TILE, FILTER_HALO):
            out[y0:y1, x0:x1] = self._run(rgb[ya:yb, xa:xb])[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
        return out
