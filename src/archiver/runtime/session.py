"""Running the decoder graph with ONNX Runtime: provider choice, threads, batches of equal shape."""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import InputError
from .graph import INPUT, OUTPUT

__all__ = ["PROVIDER_ALIASES", "resolve_providers", "OnnxDecoder"]

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


class OnnxDecoder:
    """Decodes integer latents to uint8 RGB with ONNX Runtime."""

    def __init__(self, model: onnx.ModelProto, provider: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        self.providers = resolve_providers(provider)
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)

    def decode_batch(self, latents: np.ndarray) -> np.ndarray:
        """(N, C, h, w) integer latents → (N, 16h, 16w, 3) uint8 pixels (not cropped)."""
        out = self.session.run([OUTPUT], {INPUT: latents.astype(np.float32)})[0]
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1))

    def decode(self, latent: np.ndarray, height: int, width: int) -> np.ndarray:
        """One (C, h, w) latent → (height, width, 3) uint8, the padding cropped off."""
        return self.decode_batch(latent[None])[0, :height, :width]
