"""Shipped starting points of the ``pyramid`` codec, trained for hours by ``scripts/pretrain.py``.

A pack of a few minutes on a CPU cannot teach the encoder a compact transform from scratch (about
7,000 steps; the 1/2 grid then costs 3.8 bits a symbol). A base is one variable-rate codec (encoder,
synthesis, context model and the quantization steps of every ``--quality``) trained on general
photos; ``pack --codec pyramid`` fine-tunes it on the collection at the chosen quality.

Files are ``weights/pyramid-<id>.npz``: float32 arrays ``codec.<state key>`` of
:class:`archiver.codecs.pyramid.model.PyramidCodec` and ``meta``, a JSON string with ``codec``
("pyramid"), ``spec`` (the :class:`~archiver.codecs.pyramid.plan.PyramidSpec` they fit) and
``trained`` (command, date, commit, data, steps, seconds, held-back PSNR and bpp of every level).
A base is used only for its spec (the wavefront's tile aside: it shapes no weight); anything else
trains from scratch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import bases
from .plan import PyramidSpec
from ...errors import InputError

__all__ = ["PyramidBase", "find_pyramid_base", "save_pyramid_base"]

_PREFIX = "pyramid-"


@dataclass(frozen=True)
class PyramidBase:
    """One shipped pyramid base."""

    id: str  #: the file stem, e.g. ``pyramid-b1``
    path: Path
    sha256: str  #: of the .npz file, recorded in the archive's training summary
    meta: dict

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The codec's state dict (float32 tensors)."""
        try:
            return {k: torch.from_numpy(v) for k, v in bases.load_base(self.path)[1].items()}
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: pyramid base cannot be read: {exc}") from exc

    def summary(self) -> dict:
        """What the archive's training summary records about the starting point."""
        return {"name": self.id, "sha256": self.sha256, "trained": self.meta.get("trained", {})}


def find_pyramid_base(spec: PyramidSpec, folder: Path | None = None) -> PyramidBase | None:
    """The newest shipped base made for ``spec`` (by id order), or None: the same spec, but for
    the wavefront's ``context_tile``, which changes which neighbours the context network reads
    (those outside a tile read 0), not the shape of any weight."""
    folder = folder or bases.WEIGHTS_DIR
    wanted = _weights_spec(spec.to_dict())
    found = None
    for path in sorted(folder.glob(_PREFIX + "*.npz")):
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
        if isinstance(meta.get("spec"), dict) and _weights_spec(meta["spec"]) == wanted:
            found = PyramidBase(path.stem, path, hashlib.sha256(path.read_bytes()).hexdigest(), meta)
    return found


def _weights_spec(spec: dict) -> dict:
    """A spec document without ``context_tile``, tuples as the stored JSON has them (lists)."""
    return {k: v for k, v in json.loads(json.dumps(spec)).items() if k != "context_tile"}


def save_pyramid_base(path: Path, codec: torch.nn.Module, trained: dict) -> int:
    """Write ``codec`` (a PyramidCodec) as a base to ``path`` (atomically); returns its size in bytes."""
    arrays = {f"codec.{k}": v.detach().cpu().float().numpy() for k, v in codec.state_dict().items()}
    meta = {"codec": "pyramid", "spec": codec.spec.to_dict(), "trained": trained}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    tmp.replace(path)
    return path.stat().st_size
