"""Pieces every codec's read side uses (numpy + ONNX Runtime, never torch)."""

from __future__ import annotations

from ..errors import CorruptArchiveError, MissingDependencyError

__all__ = ["no_gain", "runtime_imports"]


def no_gain(latent, gain: int):
    """``latent`` itself: a codec without per-image gains refuses a record that has one."""
    if gain:
        raise CorruptArchiveError("the image has a quantization gain, which its codec does not have")
    return latent


def runtime_imports():
    """(attach_weights, OnnxDecoder), or :class:`MissingDependencyError` naming onnxruntime."""
    try:
        import onnxruntime  # noqa: F401  (a missing install is named now, not at session time)

        from ..runtime.proto import attach_weights
        from ..runtime.session import OnnxDecoder
    except ImportError as exc:
        raise MissingDependencyError(f"decoding images needs onnxruntime ({exc})") from None
    return attach_weights, OnnxDecoder
