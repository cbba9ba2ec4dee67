"""Warm start: general codecs trained here and shipped in the package, fine-tuned per collection.

``pack`` trains a codec for one collection from scratch in the time it is given; on a CPU that time
is too short for the networks to converge. A codec of the same architecture trained beforehand on
general photos (see ``weights/README.md`` for the recipe and the data's credits) starts it much
closer to a good solution. Only the starting point changes: the archive still stores its own,
fine-tuned decoder, so archives stay self-contained and never refer to these files.

Weights are ``weights/<preset>.npz`` files: float16 arrays named ``model.<state key>`` and
``prior.<state key>``, plus ``meta`` (a JSON string: the :class:`~archiver.config.ModelConfig` they
fit, how and on what they were trained). A preset is warm-started only if its config equals the
stored one exactly; anything else trains from scratch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...config import ModelConfig
from ...errors import InputError

__all__ = ["WEIGHTS_DIR", "WarmStart", "find_warm_start", "save_warm_start"]

#: Folder of the shipped warm-start weights (inside the installed package).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "model" / "weights"  # shipped package data, shared by the codecs


@dataclass(frozen=True)
class WarmStart:
    """One shipped set of starting weights."""

    name: str  #: file stem, the preset's name
    path: Path
    sha256: str  #: of the .npz file, recorded in the archive's training summary
    meta: dict

    def load_into(self, model: nn.Module, prior: nn.Module) -> None:
        """Copy the weights into ``model`` (an Autoencoder) and ``prior`` (a ChannelPrior), as float32."""
        with np.load(self.path, allow_pickle=False) as data:
            for prefix, module in (("model.", model), ("prior.", prior)):
                state = {
                    k[len(prefix) :]: torch.from_numpy(data[k].astype(np.float32))
                    for k in data.files
                    if k.startswith(prefix)
                }
                try:
                    module.load_state_dict(state)
                except RuntimeError as exc:
                    raise InputError(f"{self.path}: warm-start weights do not fit the model: {exc}") from exc

    def summary(self) -> dict:
        """What the archive's training summary records about the starting point."""
        return {"name": self.name, "sha256": self.sha256, "trained": self.meta.get("trained", {})}


def _read_meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


def find_warm_start(model_cfg: ModelConfig, folder: Path = WEIGHTS_DIR) -> WarmStart | None:
    """The shipped weights made for exactly ``model_cfg``, or None (train from scratch)."""
    wanted = model_cfg.to_dict()
    for path in sorted(folder.glob("*.npz")):
        meta = _read_meta(path)
        if "model" not in meta:  # another codec's starting point (e.g. a pyramid base)
            continue
        if ModelConfig.from_dict(meta["model"]).to_dict() == wanted:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            return WarmStart(path.stem, path, digest, meta)
    return None


def save_warm_start(path: Path, model: nn.Module, prior: nn.Module, model_cfg: ModelConfig, trained: dict) -> int:
    """Write ``model`` and ``prior`` as warm-start weights (float16) to ``path``; returns its size in bytes."""
    arrays = {f"model.{k}": v.detach().cpu().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    arrays |= {f"prior.{k}": v.detach().cpu().numpy().astype(np.float16) for k, v in prior.state_dict().items()}
    meta = {"model": model_cfg.to_dict(), "trained": trained}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    tmp.replace(path)
    return path.stat().st_size
