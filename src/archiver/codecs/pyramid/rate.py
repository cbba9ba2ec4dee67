"""Rate control of the ``pyramid`` codec at pack time: ``--target-psnr`` and ``--max-bytes``.

Both move the quantization steps the codec was trained with by a *gain* instead of retraining: a
continuous latent ``z`` (units of the trained steps, :mod:`archiver.codecs.pyramid.infer`) quantized
at gain g is ``round(z / g)`` and decodes as ``round(z / g) · g · steps``.

**``--target-psnr D``** (:class:`TargetCoder`): each image gets its own gain code k
(:mod:`archiver.codec.gain`, stored in its extras; codec version 2), the coarsest whose PSNR
*through the ONNX runtime extract uses* is at least D:

1. the encoder's latent is quantized at codes found by doubling (16 codes, one octave, at first)
   then bisection, one runtime decode per trial (no refinement yet);
2. the latent is refined at the code found, with λ scaled to the gain;
3. searched again the same way from that code (a quarter octave first) on the refined latent.
   An image that reaches D at no code is coded at its best and reported (``--strict``: refused):
   near its ceiling, where finer codes stop adding PSNR.

**``--max-bytes N``** (:class:`BudgetFit`, :mod:`archiver.codecs.pyramid.budget`): one gain g for
the whole collection, folded into the archive's stored steps (``quant.steps`` · g). ``log2 g`` is
fitted on the encoder's latents so that the *variable* bytes — the latents' exact code length under
the collection's tables (:meth:`~archiver.codecs.pyramid.coder.HistogramCounter.ideal_bits`), the
entropy model's blob with those tables and the decoder's blob — fit in N minus a guess of the rest
of the archive (index, documents, byte-exact files, container); every latent is then refined at g.
A refined latent is integers times g: quantized again at another gain, the collection's bytes move
in steps of several percent (every 2 becoming a 1 or a 3 at once), which left photos' archives
3–5 % under N. So g stays, and *nudges* close the gap: single images refined again a quarter
octave finer (or coarser) under their own gain code (codec version 2, as ``--target-psnr``), each
moving the archive by its share. :func:`archiver.pack.pack` writes the archive, takes the rest it
really had, and nudges while the archive is over N or more than :data:`BUDGET_SLACK` under it; a
new g for all is the last resort when nudging coarser cannot get under N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...codec.gain import GAIN_MAX, GAIN_MIN, GAIN_STEPS_PER_OCTAVE, apply_gain, gain_value
from ...collection.images import measure_decoded
from ...errors import InputError

__all__ = ["TargetCoder", "TargetResult", "uniform_baseline", "BudgetFit", "BudgetError", "BUDGET_SLACK", "BUDGET_AIM",
           "merge_counters"]

#: An image that cannot reach the target is coded at the coarsest code within this many dB of the
#: best PSNR its search saw.
SATURATED_DB = 0.1
#: ``--max-bytes``: an archive more than this fraction under the budget is refitted.
BUDGET_SLACK = 0.01
#: ``--max-bytes``: the variable bytes are fitted to this fraction of what the budget leaves them
#: (the range coder's few bytes per group and a rest that moves a little with the gain).
BUDGET_AIM = 0.997
#: ``--max-bytes``: the gains searched, in octaves of the trained steps (as :mod:`archiver.codec.gain`).
LOG2_GAIN_RANGE = (GAIN_MIN / GAIN_STEPS_PER_OCTAVE, GAIN_MAX / GAIN_STEPS_PER_OCTAVE)


class BudgetError(InputError):
    """``--max-bytes`` smaller than the smallest archive of the collection."""


@dataclass(frozen=True)
class TargetResult:
    """One image coded for a PSNR floor."""

    latent: np.ndarray  #: packed integer latent (C, h, w) int32
    gain: int  #: its gain code
    psnr: float  #: dB through the runtime extract uses
    crc: int  #: pixel CRC-32 (what ``verify --decode`` checks)
    reached: bool  #: psnr ≥ the target


class TargetCoder:
    """Codes images for ``target`` dB each (see the module docstring). ``runtime`` is the ONNX
    decoder of the archive's synthesis at gain 1; ``refine`` a :class:`~archiver.model.refine.RefineBudget`."""

    def __init__(self, codec, synth, runtime, cfg, refine, tile: int, halo: int) -> None:
        self.codec, self.synth, self.runtime, self.cfg = codec, synth, runtime, cfg
        self.refine, self.tile, self.halo = refine, tile, halo
        self.target = float(cfg.target_psnr)
        self.decodes = 0  #: runtime decodes spent on the search (for the training summary)

    def _measure(self, z, k: int, im) -> tuple[np.ndarray, float, int]:
        from .infer import quantize_continuous

        latent = quantize_continuous(z, float(gain_value(k)))
        self.decodes += 1
        psnr, crc = measure_decoded(self.runtime.decode(apply_gain(latent, k), im.height, im.width), im)
        return latent, psnr, crc

    def code(self, im) -> TargetResult:
        """The latent and gain code of one decoded image (:class:`~archiver.collection.images.SourceImage`)."""
        from .infer import encode_continuous

        (padded, z), valid = encode_continuous(self.codec, im.rgb, self.cfg.quality)
        k = self._search(z, im, 0)
        z, steps = self.refined(padded, z, valid, k, self.refine)
        if steps > 0:  # refined: the code that holds is near the one found, a quarter octave first
            k = self._search(z, im, k, GAIN_STEPS_PER_OCTAVE // 4)
        latent, psnr, crc = self._measure(z, k, im)
        return TargetResult(latent, k, psnr, crc, psnr >= self.target)

    def refined(self, padded, z, valid, k: int, budget):
        """(``z`` refined at gain code ``k`` for the steps ``budget`` gives it, those steps)."""
        from .infer import refine_within

        return refine_within(budget, self.codec, self.synth, padded, z, valid, self.cfg.train.lmbda, self.tile,
                             self.halo, float(gain_value(k)))  # fmt: skip

    def _search(self, z, im, start: int, step: int = GAIN_STEPS_PER_OCTAVE) -> int:
        """The largest code whose quantization of ``z`` reaches the target, by steps doubling from
        ``start`` (``step`` codes first) then bisection; if none does, the coarsest within
        :data:`SATURATED_DB` of the best PSNR seen (finer codes cost bits for nothing)."""
        seen: dict[int, float] = {}

        def ok(k: int) -> bool:
            if k not in seen:
                seen[k] = self._measure(z, k, im)[1]
            return seen[k] >= self.target

        if ok(start):
            lo, hi = start, None
            while hi is None:
                nxt = min(lo + step, GAIN_MAX)
                if nxt == lo:
                    return lo
                lo, hi = (nxt, None) if ok(nxt) else (lo, nxt)
                step *= 2
        else:
            lo, hi = None, start
            while lo is None:
                nxt = max(hi - step, GAIN_MIN)
                if ok(nxt):
                    lo = nxt
                elif nxt == GAIN_MIN:
                    return self._ceiling(z, im, seen)
                else:
                    hi, step = nxt, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo

    def _ceiling(self, z, im, seen: dict[int, float]) -> int:
        """The coarsest code within :data:`SATURATED_DB` of the best PSNR ``seen`` (bisection
        between the coarsest saturated code seen and the next coarser one seen)."""
        floor = max(seen.values()) - SATURATED_DB
        lo = max(k for k, p in seen.items() if p >= floor)
        coarser = [k for k in seen if k > lo]
        if not coarser:
            return lo
        hi = min(coarser)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self._measure(z, mid, im)[1] >= floor else (lo, mid)
        return lo


def uniform_baseline(target: TargetCoder, images: dict, gains: dict[int, int], reached: set[int], coder,
                     table_bytes: Callable) -> dict:  # fmt: skip
    """What ``--target-psnr`` is measured against: the same trained codec with *one* gain code for
    every image, the coarsest found at which every image that ``target`` brought to the target
    still reaches it, each refined at a gain code as a plain pack refines at its steps.

    From the finest code any image needed: refine all, then step to finer codes (requantizing) while
    the lowest PSNR rises; where it stops rising short of the target, refine all again at that code
    (at most :data:`BASELINE_REFINES` times). Returns its latent bits (ideal, under its own tables),
    its tables' bytes (``table_bytes(coder)``), its code and lowest PSNR."""
    from .coder import HistogramCounter

    from .infer import encode_continuous
    from ...model.refine import RefineBudget

    k = min((gains[i] for i in reached), default=0)
    pixels = sum(s.width * s.height for s in images.values())
    for _ in range(BASELINE_REFINES):
        budget, zs = RefineBudget(target.refine.max_steps, target.refine.seconds, pixels), {}
        for i, source in images.items():
            (padded, z), valid = encode_continuous(target.codec, source.full().rgb, target.cfg.quality)
            zs[i] = target.refined(padded, z, valid, k, budget)[0]
        floor, last = -math.inf, -math.inf
        while True:
            measured = {i: target._measure(zs[i], k, images[i].full()) for i in images}
            last, floor = floor, min((measured[i][1] for i in reached), default=math.inf)
            if floor >= target.target or k == GAIN_MIN or floor < last + 0.01:
                break
            k -= 1
        if floor >= target.target or k == GAIN_MIN:
            break
    counter = HistogramCounter()
    for latent, _, _ in measured.values():
        coder.count(latent, counter)
    tables = counter.tables()
    return {"gain_code": k, "min_psnr_reached": round(floor, 4), "latent_bits": round(counter.ideal_bits(tables)),
            "table_bytes": table_bytes(coder.with_tables(tables)),
            "mean_psnr": round(float(np.mean([m[1] for m in measured.values()])), 4)}  # fmt: skip


#: Refinement passes of :func:`uniform_baseline` at most (each as long as the pack's refinement).
BASELINE_REFINES = 3


class BudgetFit:
    """The collection's continuous latents (spooled as float32 ``.npy`` in ``folder``) and the
    variable bytes of quantizing them all at one gain (see the module docstring).

    ``coder``: the pack's :class:`~archiver.codecs.pyramid.coder.PackedPyramidCoder` (any tables);
    ``entropy_bytes(coder)``: bytes of ``/model/entropy`` with that coder's tables;
    ``decoder_bytes(gain)``: bytes of ``/model/decoder`` with its steps times ``gain``.
    """

    def __init__(self, folder: Path, coder, entropy_bytes: Callable, decoder_bytes: Callable) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.coder, self.entropy_bytes, self.decoder_bytes = coder, entropy_bytes, decoder_bytes
        self.keys: list[int] = []
        self.gains: dict[int, int] = {}  #: image -> its gain code on top of the collection's (nudges)
        self.trials: list[dict] = []  #: every gain tried: log2_gain, bytes (for the training summary)

    def put(self, key: int, z) -> None:
        """Keep image ``key``'s continuous latent (a torch tensor or array (1, C, h, w))."""
        np.save(self.folder / f"{key}.npy", np.asarray(z, dtype=np.float32), allow_pickle=False)
        if key not in self.keys:
            self.keys.append(key)

    def z(self, key: int) -> np.ndarray:
        return np.load(self.folder / f"{key}.npy", allow_pickle=False)

    def quantized(self, key: int, gain: float) -> np.ndarray:
        """Image ``key``'s integer latent at the collection's ``gain`` times its own gain code's."""
        from .infer import quantize_continuous

        return quantize_continuous(self.z(key), gain * float(gain_value(self.gains.get(key, 0))))

    def counted(self, key: int, gain: float):
        """The residual histograms of image ``key`` at ``gain`` (for :meth:`variable`)."""
        from .coder import HistogramCounter

        counter = HistogramCounter()
        self.coder.count(self.quantized(key, gain), counter)
        return counter

    def variable(self, counters, gain: float) -> tuple[int, object]:
        """(variable bytes, coder with their tables) of the images counted in ``counters`` at ``gain``."""
        counter = merge_counters(counters)
        tables = counter.tables()
        coder = self.coder.with_tables(tables)
        return math.ceil(counter.ideal_bits(tables) / 8) + self.entropy_bytes(coder) + self.decoder_bytes(gain), coder

    def coded(self, log2_gain: float):
        """(variable bytes, coder with the collection's tables) at gain 2^log2_gain."""
        from .coder import HistogramCounter

        gain = 2.0**log2_gain
        counter = HistogramCounter()
        for key in self.keys:
            self.coder.count(self.quantized(key, gain), counter)
        total, coder = self.variable([counter], gain)
        self.trials.append({"log2_gain": round(log2_gain, 5), "bytes": int(total)})
        return total, coder

    def fit(self, budget: int, rest: int) -> tuple[float, int, object]:
        """The finest ``log2 g`` whose variable bytes fit in (``budget`` − ``rest``) ·
        :data:`BUDGET_AIM`, to within a quarter of :data:`BUDGET_SLACK` below it or 1/1000 octave,
        with its variable bytes and its coder (the collection's tables at that gain);
        :class:`BudgetError` if even the coarsest gain does not fit. ``rest``: the archive's bytes
        besides the variable ones.

        Bytes fall smoothly with the gain (log bytes nearly linear in log2 g), so the bracket is
        narrowed by regula falsi on log bytes (Illinois variant: a side kept twice has its weight
        halved), which needs a handful of trials where bisection needs a dozen; every trial counts
        the whole collection once."""
        lo, hi = LOG2_GAIN_RANGE  # lo: finest (most bytes), hi: coarsest
        aim = (budget - rest) * BUDGET_AIM
        smallest, coder = self.coded(hi)
        if smallest > aim:
            need = int(smallest / BUDGET_AIM) + rest
            raise BudgetError(
                f"--max-bytes {budget:,} is too small for this collection: its smallest archive is about "
                f"{need:,} bytes (model and latents at the coarsest quantization {smallest:,}, the rest {rest:,})"
            )
        best = (hi, smallest, coder)  # the finest fitting gain tried so far
        largest, coder = self.coded(lo)
        if largest <= aim:
            return lo, largest, coder
        f_lo, f_hi = math.log(largest / aim), math.log(smallest / aim)  # > 0 (too big), <= 0 (fits)
        kept = 0  # which side the last trial replaced: -1 lo, +1 hi
        while hi - lo > 1e-3:
            mid = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else (lo + hi) / 2
            mid = min(max(mid, lo + 1e-4), hi - 1e-4)
            size, coder = self.coded(mid)
            f_mid = math.log(size / aim)
            if size <= aim:
                hi, f_hi, best = mid, f_mid, (mid, size, coder)
                if size >= aim * (1 - BUDGET_SLACK / 4):
                    break
                if kept == 1:
                    f_lo /= 2
                kept = 1
            else:
                lo, f_lo = mid, f_mid
                if kept == -1:
                    f_hi /= 2
                kept = -1
        return best


def merge_counters(counters):
    """One :class:`~archiver.codecs.pyramid.coder.HistogramCounter` holding the counts of all of
    ``counters`` (the same tables and bits as counting their images into one)."""
    from .coder import HistogramCounter

    counters = list(counters)
    if len(counters) == 1:
        return counters[0]
    out = HistogramCounter()
    for c in counters:
        for k, h in c.hist.items():
            lo, hi = c.lows[k], c.lows[k] + h.size
            if k in out.hist:
                lo, hi = min(lo, out.lows[k]), max(hi, out.lows[k] + out.hist[k].size)
            if k not in out.hist or lo != out.lows[k] or hi - lo != out.hist[k].size:
                grown = np.zeros(hi - lo, np.int64)
                if k in out.hist:
                    grown[out.lows[k] - lo : out.lows[k] - lo + out.hist[k].size] = out.hist[k]
                out.hist[k], out.lows[k] = grown, lo
            out.hist[k][c.lows[k] - out.lows[k] : c.lows[k] - out.lows[k] + h.size] += h
    return out
