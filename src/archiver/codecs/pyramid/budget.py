"""``pack --codec pyramid --max-bytes N``: code the collection so that the whole archive is at most N
bytes and at most :data:`archiver.codecs.pyramid.rate.BUDGET_SLACK` under it (the method:
:mod:`archiver.codecs.pyramid.rate`).

:func:`check_budget` refuses, before training, a budget below the model and the rest of the
archive alone. :func:`code_for_budget` fits one gain on the encoder's latents, refines every
latent at that gain and codes; :func:`write_within_budget` writes the archive to a scratch file,
and while it is over N (or too far under) nudges images with the rest it really had (``_Nudges``),
then moves it into place: an archive over the budget never appears at the output path. One left
more than the slack under says why in its training summary (``budget.short``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zstandard

from ...codec.gain import gain_value
from .rate import BUDGET_AIM, BUDGET_SLACK, BudgetError, BudgetFit
from ...progress import emit
from ...time_budget import current as time_budget

__all__ = ["check_budget", "rest_guess", "code_for_budget", "write_within_budget", "BUDGET_WRITES"]

#: Archive writes at most, each after nudges with the rest the previous one measured: the first
#: measures the rest, the second lands (24 and 100 crops of 128²), a third when the gain codes'
#: bytes were guessed wrong. Writing stops sooner when nudging has nothing left to change.
BUDGET_WRITES = 5
#: An archive's bytes besides model and latents (HDF5 structure, the documents: config, training
#: summary with its history, codec, summary; the ONNX graph, the index) at the least, and per entry
#: (index columns, group extras). Measured: 2,644 bytes on a pyramid archive of 6 images of 96²
#: and one text file (container 1,539, documents 731). The check before training uses this lower
#: bound: a guess too high could refuse a budget that fits.
REST_BYTES, REST_BYTES_PER_ENTRY = 2_000, 8
#: What the first fit adds to that lower bound to guess the rest (and the kept metadata's other half):
#: measured, 939 more with 24 crops of 128² (3,131 bytes) and 804 more with 100 (3,604). The first
#: write measures the rest; the nudges take up what the guess missed.
REST_FIT_BYTES = 850
#: Gain codes a nudge moves an image by (a quarter octave: 6 crops of 128² refined again 4 codes
#: finer took 12–34 % more latent bytes and gained 0.4–1.7 dB).
NUDGE_CODES = 4
#: The bytes a nudge finer adds to an image's latent, as a fraction of them (the guess by which one
#: that would overshoot the budget is skipped before refining).
NUDGE_GROWTH = 0.2
#: Share of the refinement time kept for nudges (at the steps the first refinement gave, about a
#: quarter of the images; 100 crops of 128² under --time-limit 2m: 22 nudged in 10 s to close 7 %).
NUDGE_SHARE = 0.2
#: Nudges finer stop once the archive is at most this fraction of BUDGET_SLACK under the budget.
NUDGE_FLOOR = 0.75
#: Bytes the nudged images' gain codes add to the archive (in their extras' JSON headers, one zstd
#: frame per group): measured 26–31 with 2 nudged, 62 with 3, 64 with 11 of 24 crops of 128², 38
#: and 132 with 22 and 14 of 100. The next write measures them.
GAIN_FRAME_BYTES, GAIN_HEADER_BYTES = 24, 4


def rest_guess(items, classes) -> int:
    """Bytes besides model and latents at the least, before coding: the constants above and each
    byte-exact file and the images' kept metadata (:func:`kept_blob_bytes`) compressed at zstd
    level 1, halved (pack stores them at level 19)."""
    from ...collection.images import SourceImage
    from ...container.format import EntryKind

    fast = zstandard.ZstdCompressor(level=1)
    files = 0
    for i, item in enumerate(items):
        if item.kind is EntryKind.FILE and not isinstance(classes.get(i), SourceImage):
            try:
                files += len(fast.compress(item.path.read_bytes()))
            except OSError:
                pass  # pack names the file when it reads it
    blobs = kept_blob_bytes(c for c in classes.values() if isinstance(c, SourceImage))
    return REST_BYTES + REST_BYTES_PER_ENTRY * len(items) + (files + blobs) // 2


def kept_blob_bytes(images) -> int:
    """The images' metadata kept losslessly (EXIF, ICC and XMP once each, alpha and palettes per
    image; none for an image not in memory) compressed at zstd level 1. Measured: 6,198 bytes for
    the 5 ICC profiles of 12 photo crops, which the archive stored in 6,060."""
    import hashlib

    from ...container.format import SHARED_BLOBS

    fast, shared, inline = zstandard.ZstdCompressor(level=1), {}, 0
    for image in images:
        for name, data in image.blobs.items():
            if name in SHARED_BLOBS:
                shared[hashlib.sha256(data).digest()] = data
            else:
                inline += len(fast.compress(bytes(data)))
    return inline + sum(len(fast.compress(bytes(data))) for data in shared.values())


def check_budget(cfg, items, classes) -> int:
    """Before training: :class:`BudgetError` if ``cfg.max_bytes`` cannot hold the model (as small as
    it can be stored) and the rest of the archive; returns the rest's guess (:func:`rest_guess`)."""
    rest, model = rest_guess(items, classes), minimum_model_bytes(cfg)
    if cfg.max_bytes < rest + model:
        raise BudgetError(
            f"--max-bytes {cfg.max_bytes:,} is too small: the model ({model:,} bytes at the least) and the "
            f"rest of the archive (index, documents, files kept as they are: {rest:,} at the least) take "
            f"{rest + model:,} bytes before any image"
        )
    return rest


def minimum_model_bytes(cfg) -> int:
    """The fewest bytes ``/model/decoder`` and ``/model/entropy`` can take: an unchanged base's
    difference when the archive stores one, else the base's (or an untrained codec's) whole model
    without tables."""
    from .bases import to_delta
    from .plan import PYRAMID_PRESETS
    from ...codec.weights import pack_arrays
    from .model import PyramidCodec
    from .base import find_pyramid_base
    from .train import context_net, synthesis_arrays
    from .pack import _delta_reference, _stores_delta

    spec = PYRAMID_PRESETS["default"]
    base = find_pyramid_base(spec) if cfg.train.warm_start else None
    if base is not None and _stores_delta(cfg, base):
        reference = _delta_reference(base)
        return sum(len(pack_arrays(to_delta(a, a), cfg.zstd_level)[0]) for a in reference.values())
    codec = PyramidCodec(spec)
    if base is not None:
        codec.load_state_dict(base.state_dict())
    entropy = {f"context.{k}": v for k, v in context_net(codec).to_arrays().items()}
    return sum(len(pack_arrays(a, cfg.zstd_level)[0]) for a in (synthesis_arrays(codec, cfg.quality), entropy))


def code_for_budget(out, cfg, spec, codec, base, reference, images: dict, spool_dir: Path, progress, rest: int) -> None:
    """Fill ``out`` (:class:`archiver.pack.CodedImages`) for ``cfg.max_bytes``, with ``out.refit``;
    ``rest``: the guess of the archive's other bytes (:func:`check_budget`)."""
    import torch

    from .coder import PackedPyramidCoder
    from .infer import encode_continuous, padded_image, refine_within
    from .train import context_net, int8_synthesis
    from ...model.refine import RefineBudget
    from .pack import decoder_arrays, entropy_blob

    fit = BudgetFit(
        spool_dir.parent / "continuous", PackedPyramidCoder(spec, context_net(codec)),
        lambda coder: len(entropy_blob(cfg, coder, reference)[0]),
        lambda gain: len(decoder_arrays(cfg, codec, reference, gain)[1][0]),
    )  # fmt: skip
    encoded = spool_dir.parent / "encoded"  # the encoder's latents, which nudges refine again
    encoded.mkdir(parents=True, exist_ok=True)
    for n, (i, source) in enumerate(images.items(), 1):
        (_, z), _ = encode_continuous(codec, source.full().rgb, cfg.quality)
        fit.put(i, z)
        np.save(encoded / f"{i}.npy", z.numpy(), allow_pickle=False)
        emit(progress, "encode", n, len(images))
    blobs = kept_blob_bytes(images.values())
    rest += REST_FIT_BYTES + blobs - blobs // 2  # the guess: the lower bound, and the metadata whole
    log2_gain = fit.fit(cfg.max_bytes, rest)[0]
    synth = int8_synthesis(codec, decoder_arrays(cfg, codec, reference)[0])
    pixels = sum(s.width * s.height for s in images.values())
    refine = time_budget(cfg, pixels).refine_budget(cfg.train.refine_steps, pixels)  # what --time-limit leaves
    end, kept = refine.deadline, NUDGE_SHARE * refine.seconds  # kept for the nudges
    refine.seconds -= kept
    if end is not None:
        refine.deadline = end - kept
    nudges = _Nudges(out, cfg, spec, codec, base, reference, images, fit, spool_dir, progress, synth, log2_gain)
    for n, (i, source) in enumerate(images.items(), 1):
        padded, valid = padded_image(codec, source.full().rgb)
        z = torch.from_numpy(fit.z(i))  # the encoder's latent, kept by the first pass
        # The search alone (relax=0): a relaxed latent made the bytes jump by 1.8 % within 0.001
        # octave of its gain in a 4-image test. A searched latent is integers times its gain:
        # quantized again at another gain, the collection's bytes jumped 8–10 % at once (every 2
        # becoming a 1 or a 3; 24 crops of 128²) and decoded worse. The gain stays; nudges fill up.
        fit.put(i, refine_within(refine, codec, synth, padded, z, valid, cfg.train.lmbda, *nudges.tiling,
                                 2.0**log2_gain, relax=0)[0])  # fmt: skip
        emit(progress, "refine", n, len(images))
    out.training["refine"] = given = refine.summary()
    # Nudged images get the steps the others got on average (more would also cut their bytes), within
    # what the first refinement left of its time; the nudges stop at its deadline.
    cost = refine.spent / refine.pixel_steps if refine.pixel_steps else refine.cost
    nudges.refine = RefineBudget(round(given["mean_steps"]), refine.seconds + kept - refine.spent,
                                 round(NUDGE_SHARE * pixels), cost=cost)  # fmt: skip
    nudges.deadline = end
    nudges.code_first(rest)
    out.refit = nudges


class _Nudges:
    """``--max-bytes`` after refinement: the collection's gain (``log2_gain``), the images' own gain
    codes and latents in ``fit``; called (``out.refit``) with the rest a write measured, it codes
    them all again for the budget.

    A *nudge* refines one image again from the encoder's latent :data:`NUDGE_CODES` gain codes finer
    (or coarser) than the collection's gain and stores that code in its extras (codec version 2),
    changing the archive by that image's share of a quarter octave: the finest lever there is."""

    def __init__(self, out, cfg, spec, codec, base, reference, images, fit, spool_dir, progress, synth, log2_gain):
        from .read import pyramid_tiling

        self.out, self.cfg, self.spec, self.codec, self.base, self.reference = out, cfg, spec, codec, base, reference
        self.images, self.fit, self.spool_dir, self.progress, self.synth = images, fit, spool_dir, progress, synth
        self.log2_gain, self.tiling = log2_gain, pyramid_tiling(spec.stride)
        self.refine = None  #: the RefineBudget of nudges (what the first refinement left)
        self.deadline: float | None = None  #: when nudging must stop (``time.monotonic()``)
        self.searched: dict[int, np.ndarray] = {}  #: image -> its latent refined at the collection's gain
        self.arrays = None  #: the decoder's arrays at log2_gain
        self.stopped = ""  #: why the last nudges stopped short of the budget ("" when they did not)

    def code_first(self, rest: int) -> None:
        """Code every image at the gain it was refined at (the first write measures the rest)."""
        self._code(*self._size({i: self.fit.counted(i, 2.0**self.log2_gain) for i in self.fit.keys}), rest)

    def __call__(self, rest: int) -> bool:
        """Code everything for ``cfg.max_bytes`` leaving ``rest`` bytes (besides model, latents and
        gain codes) to the rest of the archive: nudge images coarser while the variable bytes are
        over, refit the gain if that is not enough, nudge images finer while they are more than the
        slack under. False when nothing changed (the archive written last stands)."""
        fit, budget = self.fit, self.cfg.max_bytes
        before = (self.log2_gain, self._codes())
        hi = (budget - rest) * BUDGET_AIM
        lo = budget * (1 - BUDGET_SLACK * NUDGE_FLOOR) - rest
        counters = {i: fit.counted(i, 2.0**self.log2_gain) for i in fit.keys}
        size, coder = self._size(counters)
        self.stopped = ""
        if size > hi:
            size, coder = self._nudge(counters, +1, hi, lo, size, coder)
        if size > hi:  # a new gain for all: every latent quantized again (the last resort)
            self.log2_gain = fit.fit(budget, rest + self._gain_bytes())[0]
            self.arrays = None
            counters = {i: fit.counted(i, 2.0**self.log2_gain) for i in fit.keys}
            size, coder = self._size(counters)
        if size < lo:
            size, coder = self._nudge(counters, -1, hi, lo, size, coder)
        if (self.log2_gain, self._codes()) == before:
            return False
        self._code(size, coder, rest)
        return True

    def _size(self, counters: dict) -> tuple[int, object]:
        """(variable bytes, coder with their tables): model, latents and the nudged images' gain codes."""
        size, coder = self.fit.variable(counters.values(), 2.0**self.log2_gain)
        return size + self._gain_bytes(), coder

    def _codes(self) -> dict[int, int]:
        """The nudged images' gain codes."""
        return {i: k for i, k in self.fit.gains.items() if k}

    def _gain_bytes(self) -> int:
        nudged = len(self._codes())
        return GAIN_FRAME_BYTES + GAIN_HEADER_BYTES * nudged if nudged else 0

    def _nudge(self, counters: dict, way: int, hi: float, lo: float, size: int, coder) -> tuple[int, object]:
        """Nudge images ``way`` (+1 coarser, -1 finer) until the variable bytes ``size`` are in
        [``lo``, ``hi``] (coarser: at most ``hi``): first those nudged the other way (back to the
        collection's gain), then the others, finer from the lowest PSNR up, coarser from the highest
        down. A finer nudge that would overshoot ``hi`` is skipped: a smaller one may fit."""
        fit, psnrs = self.fit, self.out.psnrs
        back = [i for i in fit.keys if fit.gains.get(i, 0) == -way * NUDGE_CODES]
        others = sorted((i for i in fit.keys if not fit.gains.get(i, 0)), key=lambda i: way * -psnrs.get(i, 0.0))
        done = lambda: size <= hi and (way > 0 or size >= lo)  # noqa: E731
        skipped, self.stopped = 0, ""
        for i in back + others:
            if done():
                break
            code = fit.gains.get(i, 0) + way * NUDGE_CODES
            if way < 0 and code and size + NUDGE_GROWTH * counters[i].ideal_bits(coder.inner.tables) / 8 > hi:
                skipped += 1
                continue
            z = None if self.deadline is not None and time.monotonic() > self.deadline else self._latent(i, code)
            if z is None:
                self.stopped = "time"
                break
            old = (fit.gains.get(i, 0), fit.z(i), counters[i])
            fit.gains[i] = code
            fit.put(i, z)
            counters[i] = fit.counted(i, 2.0**self.log2_gain)
            new, new_coder = self._size(counters)
            if not (size < new <= hi if way < 0 else new < size):  # overshoots, or goes the wrong way
                fit.gains[i], counters[i] = old[0], old[2]
                fit.put(i, old[1])
                skipped += 1
                continue
            size, coder = new, new_coder
        if not done() and not self.stopped:
            self.stopped = "granularity" if skipped else "every image nudged"
        return size, coder

    def _latent(self, i: int, code: int):
        """Image ``i``'s latent refined at the collection's gain times gain code ``code`` (its first
        refinement for code 0); None when the nudges' refinement time is spent."""
        import torch

        from .infer import padded_image, refine_within

        if i not in self.searched:
            self.searched[i] = self.fit.z(i)
        if code == 0:
            return self.searched[i]
        padded, valid = padded_image(self.codec, self.images[i].full().rgb)
        z = torch.from_numpy(np.load(self.spool_dir.parent / "encoded" / f"{i}.npy", allow_pickle=False))
        z, steps = refine_within(self.refine, self.codec, self.synth, padded, z, valid, self.cfg.train.lmbda,
                                 *self.tiling, 2.0**self.log2_gain * float(gain_value(code)), relax=0)  # fmt: skip
        return None if steps <= 0 < self.refine.max_steps else z.numpy()

    def _code(self, size: int, coder, rest: int) -> None:
        """Export the decoder at the gain, quantize and measure every image, export the tables."""
        from .pack import _export_decoder

        out, fit = self.out, self.fit
        gain = 2.0**self.log2_gain
        if self.arrays is None:
            self.arrays = _export_decoder(out, self.cfg, self.spec, self.codec, self.base, self.reference, gain)
        out.gains = self._codes()  # per-image gain codes: every version pack writes allows them
        _code_at(out, self.cfg, self.spec, fit, self.arrays, self.images, self.spool_dir, gain, coder,
                 self.reference, self.progress)  # fmt: skip
        out.predicted_bytes = size
        nudged = list(out.gains.values())
        out.training["budget"] = {
            "max_bytes": self.cfg.max_bytes, "log2_gain": round(self.log2_gain, 5), "rest": rest,
            "trials": len(fit.trials), "finer": sum(k < 0 for k in nudged), "coarser": sum(k > 0 for k in nudged),
            "refine_seconds": round(self.refine.spent, 3) if self.refine else 0.0,
        }  # fmt: skip


def _code_at(out, cfg, spec, fit: BudgetFit, arrays: dict, images: dict, spool_dir: Path, gain: float, coder,
             reference, progress) -> None:  # fmt: skip
    """Quantize every kept latent at ``gain`` (already in ``arrays``' steps) and its own gain code,
    measure it through the runtime and spool it; ``coder`` (with the tables counted at that gain)
    into ``out``."""
    from ...codec.gain import apply_gain
    from ...codec.spool import LatentSpool
    from ...collection.images import measure_decoded
    from .read import synthesis_runtime
    from .pack import _export_entropy
    from ...runtime.graph import attach_weights

    runtime = synthesis_runtime(attach_weights(out.onnx_graph, arrays), spec.stride, out.codec.version)
    spool = LatentSpool(spool_dir)
    for n, (i, source) in enumerate(images.items(), 1):
        im = source.full()
        latent = fit.quantized(i, gain)
        decoded = runtime.decode(apply_gain(latent, fit.gains.get(i, 0)), im.height, im.width)
        out.psnrs[i], out.crcs[i] = measure_decoded(decoded, im)
        spool.put(i, latent)
        emit(progress, "measure", n, len(images), {"psnr": out.psnrs[i]})
    out.latents = spool.latent
    _export_entropy(out, cfg, coder, reference)


def write_within_budget(write: Callable[[Path], int], coded, max_bytes: int, output: Path) -> int:
    """Write with ``write(path) -> bytes`` to a scratch file next to ``output`` until the archive is
    at most ``max_bytes`` and at most :data:`BUDGET_SLACK` under it (refitting ``coded`` with the
    rest each write measured), then move it to ``output``; returns its size. An archive left more
    than the slack under says why in its training summary (``budget.short``)."""
    scratch = output.with_name(f".{output.name}.budget")
    floor = max_bytes * (1 - BUDGET_SLACK)
    try:
        for attempt in range(BUDGET_WRITES):
            size = write(scratch)
            if coded.refit is None or floor <= size <= max_bytes or attempt == BUDGET_WRITES - 1:
                break
            if coded.refit(size - coded.predicted_bytes) is False:
                break  # nothing left to change
        if size > max_bytes:
            raise BudgetError(f"--max-bytes {max_bytes:,}: the archive still takes {size:,} bytes after "
                              f"{BUDGET_WRITES} fits; nothing was written")  # fmt: skip
        if coded.refit is not None and size < floor:
            size = _say_why(write, coded, scratch, size, max_bytes)
        os.replace(scratch, output)
        return size
    finally:
        scratch.unlink(missing_ok=True)


#: ``budget.short`` of an archive more than the slack under, by why its nudges stopped.
SHORT_REASONS = {
    "time": "the refinement time kept for nudges ran out",
    "granularity": "nudging any one more image a quarter octave finer would overshoot the budget",
    "every image nudged": "every image is already nudged finer",
}


def _say_why(write: Callable[[Path], int], coded, scratch: Path, size: int, max_bytes: int) -> int:
    """Write the archive again with why it is ``size`` bytes, more than the slack under the budget
    (again without it, should the explanation itself overshoot); returns its size."""
    budget = coded.training.setdefault("budget", {})
    stopped = getattr(coded.refit, "stopped", "")
    budget["short"] = SHORT_REASONS.get(stopped, f"it still came out under after {BUDGET_WRITES} writes")
    new = write(scratch)
    if new <= max_bytes:
        return new
    del budget["short"]
    return write(scratch)
