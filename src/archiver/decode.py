"""Turning one image entry of an open archive back into a Pillow image."""

from __future__ import annotations

from PIL import Image

from .codec.entropy import LatentCoder
from .codec.geometry import latent_grid
from .config import ModelConfig
from .container.entries import Entry
from .container.reader import ArchiveReader
from .container.records import ImageRecord, decode_image_record
from .collection.images import restore_image
from .errors import CorruptArchiveError, MissingDependencyError

__all__ = ["ArchiveDecoder"]


class ArchiveDecoder:
    """Decodes image entries through ONNX Runtime (no torch); network and coder are built on first use."""

    def __init__(self, reader: ArchiveReader, provider: str = "auto", threads: int | None = None) -> None:
        self.reader = reader
        self.provider = provider
        self.threads = threads
        self._coder: LatentCoder | None = None
        self._decoder = None
        self._model_cfg = ModelConfig.from_dict(reader.config.get("model", {}))
        self._min_size = int(reader.training.get("crop", 0))

    def _ensure(self) -> None:
        if self._decoder is not None:
            return
        try:
            from .runtime.graph import attach_weights
            from .runtime.session import OnnxDecoder
        except ImportError as exc:
            raise MissingDependencyError(f"decoding images needs onnx and onnxruntime ({exc})") from None
        self._coder = LatentCoder(self.reader.tables())
        model = attach_weights(self.reader.onnx_graph(), self.reader.model_arrays())
        self._decoder = OnnxDecoder(model, self.provider, self.threads)

    def image(self, entry: Entry) -> tuple[Image.Image, ImageRecord]:
        """The restored image of ``entry`` (mode and size of the original) and its parsed record."""
        self._ensure()
        record = decode_image_record(self.reader.read_record(entry))
        h, w = latent_grid(entry.height, entry.width, self._min_size, self._model_cfg.stride)
        latent = self._coder.decode(record.latent, h, w)  # type: ignore[union-attr]
        pixels = self._decoder.decode(latent, entry.height, entry.width)  # type: ignore[union-attr]
        try:
            return restore_image(pixels, entry.mode, record.blobs), record
        except (KeyError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.path}: entry {entry.name!r}: {exc}") from None
