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
    """Decodes image entries one at a time; the network and the coder are built on first use."""

    def __init__(self, reader: ArchiveReader) -> None:
        self.reader = reader
        self._coder: LatentCoder | None = None
        self._decoder = None
        self._model_cfg = ModelConfig.from_dict(reader.config.get("model", {}))
        self._min_size = int(reader.training.get("crop", 0))

    def _ensure(self) -> None:
        if self._decoder is not None:
            return
        try:
            from .model.inference import int8_decoder
        except ImportError:
            raise MissingDependencyError(
                "decoding images needs PyTorch in this version: pip install torch==2.13.0"
            ) from None
        self._coder = LatentCoder(self.reader.tables())
        self._decoder = int8_decoder(self._model_cfg, self.reader.model_arrays())

    def image(self, entry: Entry) -> tuple[Image.Image, ImageRecord]:
        """The restored image of ``entry`` (mode and size of the original) and its parsed record."""
        self._ensure()
        from .model.inference import decode_latent

        record = decode_image_record(self.reader.read_record(entry))
        h, w = latent_grid(entry.height, entry.width, self._min_size, self._model_cfg.stride)
        latent = self._coder.decode(record.latent, h, w)  # type: ignore[union-attr]
        pixels = decode_latent(self._decoder, latent, entry.height, entry.width)
        try:
            return restore_image(pixels, entry.mode, record.blobs), record
        except (KeyError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.path}: entry {entry.name!r}: {exc}") from None
