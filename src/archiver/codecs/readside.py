"""Pieces every codec's read side uses (numpy + ONNX Runtime, never torch)."""

from __future__ import annotations

from ..errors import CorruptArchiveError, MissingDependencyError

__all__ = ["no_gain", "no_codec_data", "runtime_imports"]


def no_gain(latent, gain: int):
    """``latent`` itself: a codec without per-image gains refuses a record that has one."""
    if gain:
        raise CorruptArchiveError("the image has a quantization gain, which its codec does not have")
    return latent


def no_codec_data(record) -> None:
    """Refuse an image record (:class:`archiver.container.records.ImageRecord`) with per-image codec
    data, for a codec (version) that has none."""
    if record.codec:
        raise CorruptArchiveError("the image has per-image codec data, which its codec version does not have")


def runtime_imports():
    """(attach_weights, OnnxDecoder), or :class:`MissingDependencyError` naming onnxruntime."""
    try:
        import onnxruntime  # noqa: F401  (a missing install is named now, not at session time)

        from ..runtime.proto import attach_weights
        from ..runtime.session import OnnxDecoder
    except ImportError as exc:
        raise MissingDependencyError(f"decoding images needs onnxruntime ({exc})") from None
    return attach_weights, OnnxDecoder
