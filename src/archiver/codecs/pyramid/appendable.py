"""``pack --appendable`` for the pyramid: the archive also keeps the collection's own analysis (the
encoder pack fine-tuned with the archive's synthesis), int8, at ``/model/encoder``; as its
difference from the base's encoder when the archive stores its model as one (with the base's
scales: small integers, about half the bytes of the whole encoder).

Without it, ``append`` starts a new image from the shipped base's encoder, which pack trained the
synthesis away from, and refines it for :data:`archiver.codecs.pyramid.append.BASE_ENCODER_STEPS`
steps. With it, a new image starts where pack's own images started, and :data:`ENCODER_STEPS`
refinement steps reach more than those do. Measured on 6 photo halves of ``examples/photos``
packed at ``--quality 4`` (500 steps from pyramid-b3), the 4 other halves appended: from the base's
encoder, 100 steps, 30.97 dB at 0.818 latent bpp; from the stored int8 encoder, 30 steps, 31.18 dB
at 0.777 bpp (100 steps: 31.19 dB, 0.776 bpp): 5 % fewer bits and +0.2 dB in a third of the steps.
The encoder costs its bytes once (``training.appendable.encoder_bytes``; there 39 kB as its
difference from the base, 75 kB whole, on a 40 kB archive): the bits saved repay it after about
8 Mpx of appended images (one phone photo), the +0.2 dB on top. Opt-in, as the autoencoder's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ENCODER_STEPS", "store_encoder", "own_start", "keep_encoder"]

#: Refinement steps per new image from the archive's own encoder (as the autoencoder's).
ENCODER_STEPS = 30


def _reference(base_id: str, sha256: str, folder=None) -> dict[str, np.ndarray]:
    """The int8 arrays of the base's encoder with its own scales (what an appendable archive made
    from that base stores the difference from)."""
    from .bases import base_file, int8_reference, load_base

    _, state = load_base(base_file(base_id, sha256, folder))
    return int8_reference(state, "encoder.")


def store_encoder(out, cfg, codec, base, delta: bool) -> None:
    """Put the trained encoder's blob in ``out`` (:class:`archiver.pack.CodedImages`), as its
    difference from ``base``'s when the archive's model is stored as one (``delta``), and say so in
    the training summary."""
    from ...codec.weights import pack_arrays
    from ...model.int8 import quantize_weights
    from .bases import to_delta

    reference = _reference(base.id, base.sha256, base.path.parent) if delta else None
    arrays = quantize_weights(codec.encoder, reference)
    out.encoder_blob = pack_arrays(to_delta(arrays, reference) if reference else arrays, cfg.zstd_level)
    out.training["appendable"] = {
        "encoder_bytes": len(out.encoder_blob[0]),
        "stored": f"difference from {base.id}" if delta else "whole",
        "append_starts_from": "the archive's own encoder",
    }


def own_start(reader, spec) -> dict:
    """A :class:`~archiver.codecs.pyramid.model.PyramidCodec` state whose encoder is the one the
    archive stores (the rest is replaced by the archive's synthesis and context network when refining)."""
    from ...model.int8 import load_quantized
    from .bases import from_delta
    from .model import PyramidCodec, PyramidEncoder

    arrays = reader.model_arrays("encoder")
    base = reader.codec.desc.base
    if base:
        arrays = from_delta(arrays, _reference(base["id"], base["sha256"]))
    encoder = load_quantized(PyramidEncoder(spec), arrays)
    state = PyramidCodec(spec).state_dict()
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    return state


def keep_encoder(writer, reader, zstd_level: int) -> None:
    """Copy an appendable archive's encoder, unchanged, so that it stays appendable."""
    if reader.has_encoder:
        from ...codec.weights import pack_arrays

        writer.write_model(*pack_arrays(reader.model_arrays("encoder"), zstd_level), name="encoder")
