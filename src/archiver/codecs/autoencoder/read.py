"""The autoencoder's read side: what extraction needs to decode its images (numpy + ONNX Runtime)."""

from __future__ import annotations

from .. import CodecDescription
from ..readside import no_codec_data, no_gain, runtime_imports

__all__ = ["AutoencoderReadSide"]


class AutoencoderReadSide:
    """Format versions 1–2 codec: one latent at 1/16, per-channel or context tables, conv decoder."""

    def __init__(self, reader, desc: CodecDescription) -> None:
        from ...config import ModelConfig
        from ...runtime.session import HALO, TILE

        self.reader, self.desc = reader, desc
        self.model = ModelConfig.from_dict(desc.spec)
        self.stride, self.min_size = self.model.stride, reader.min_size
        self.tile, self.halo = TILE, HALO

    #: the ``/model`` weight blobs this codec stores
    model_names = ("decoder",)

    def macs_per_pixel(self) -> float:
        """Multiply–accumulates per pixel of the decoder."""
        from .architecture import decoder_macs_per_pixel

        return decoder_macs_per_pixel(self.model)

    def check_decodable(self) -> None:
        """Nothing outside the archive is needed."""

    def model_arrays(self, name: str = "decoder") -> dict:
        """The arrays of ``/model/<name>`` (stored whole)."""
        return self.reader.model_arrays(name)

    def synthesis_input(self, latent, record):
        """The latent itself (this codec has no per-image gains or codec data; ``record``: the
        image's :class:`~archiver.container.records.ImageRecord`)."""
        no_codec_data(record)
        return no_gain(latent, record.gain)

    def coder(self):
        from ...codec.entropy import LatentCoder

        return LatentCoder(self.reader.tables())

    def graph(self) -> bytes:
        """The decoder's ONNX graph (stored, or rebuilt from ``config.model`` for the oldest archives)."""
        if self.reader.codec_attr() is None and not self.reader.has_model("decoder_onnx"):
            from ...config import PackConfig
            from ...runtime.graph import graph_only
            from .graph import build_graph

            cfg = PackConfig.from_dict(self.reader.config)
            return graph_only(build_graph(cfg.model, int8=cfg.int8_weights))
        return self.reader.onnx_graph()

    def runtime(self, provider: str, threads: int | None, spin: bool = True):
        attach_weights, OnnxDecoder = runtime_imports()
        model = attach_weights(self.graph(), self.reader.model_arrays())
        return OnnxDecoder(model, provider, threads, self.stride, self.tile, self.halo, spin)
