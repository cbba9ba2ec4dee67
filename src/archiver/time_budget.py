"""``pack --time-limit T`` bounds the whole pack: training, refinement, coding and writing (and the
denoiser when asked) share T; scanning and reading the input come on top.

:func:`archiver.pack.pack` plans a :class:`TimeBudget` once the input is scanned and makes it the
running one while the codec trains and codes (:func:`running`). The codec asks for it
(:func:`current`) at each stage: training runs with :meth:`TimeBudget.training`'s time limit,
refinement gets :meth:`TimeBudget.refine_budget`, what the real clock leaves after training, and the
denoiser :meth:`TimeBudget.denoiser_seconds`. The split, from the codec's package (the registry):

- a reserve for the work besides training and refinement, from the pixel count: each image's
  encoding and its measurement through the runtime extract uses (``MEASURE_SECONDS_PER_MPX``), the
  tables, entropy coding and writing (``WRITE_SECONDS_PER_MPX``, plus :data:`CODING_FIXED_SECONDS`);
- with ``--denoiser``, its share: ``denoiser_time`` plus its two decoding passes, or
  :data:`DENOISER_SHARE` of T;
- of the rest, refinement's share is ``REFINE_TIME_FACTOR`` (an explicit ``--refine-time``, up to
  all but :data:`TRAIN_MIN_SHARE`; none with refinement off) and training gets the remainder.

Training stops at its share (sooner when it converges); refinement then gets whatever the clock
leaves before the reserve and the denoiser's share (at most ``--refine-time`` when given), and its
loop stops at that deadline (:class:`archiver.model.refine.RefineBudget`). What the limit cut from
the wanted work goes to the training summary's ``time_budget`` (:meth:`TimeBudget.summary`).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

from .codecs import codec as codec_package

__all__ = ["TimeBudget", "current", "running", "EFFORT_SECONDS_PER_MPX", "EFFORT_MIN_SECONDS", "CODING_FIXED_SECONDS", "TRAIN_OVERHEAD_SECONDS", "DENOISER_SHARE",
           "TRAIN_MIN_SHARE"]  # fmt: skip

#: Seconds of the reserve whatever the pixel count: exporting the graph, compressing the model,
#: opening, committing and syncing the archive (3–4 s of wall time on the 2-core machine under a
#: load average of 8, 1.5 s of CPU).
CODING_FIXED_SECONDS = 2.0
#: Seconds training takes outside its own clock (set-up, the final held-back measurement), kept
#: from its share (7–8 s of wall time under that load, 3 s of CPU).
TRAIN_OVERHEAD_SECONDS = 3.0
#: ``--denoiser``'s share of T when ``denoiser_time`` is not given (it had a fifth of the training
#: time on top of it before T bounded the whole pack; its small network mostly converges sooner).
DENOISER_SHARE = 0.15
#: With an explicit ``--refine-time``, training keeps at least this fraction of the time left for
#: training and refinement.
TRAIN_MIN_SHARE = 0.25
#: Training and refinement keep at least this fraction of T even when the reserve and the denoiser
#: would take more (the pack then runs over T, and says so).
WORK_MIN_SHARE = 0.2
#: The denoiser's passes over the collection, in units of the measuring pass: one decode for its
#: training pairs, one decode and filter for its verdict.
DENOISER_PASSES = 2.5

#: The denoiser's verdict pass (decode, filter, measure) in units of the pass that decoded its
#: training pairs (decode, measure): the filter is a second network over the same pixels.
VERDICT_PASSES = 1.5

#: ``--effort 1``: seconds of pack per megapixel of the collection. An 8-minute pack of the heldout
#: album (48 photos, 17.5 Mpx), the issue's default effort; ``--effort 16`` gives its first 8 photos
#: (2.9 Mpx) about 21 minutes.
EFFORT_SECONDS_PER_MPX = 27.4
#: The shortest limit ``--effort`` sets (a handful of small images still trains and codes).
EFFORT_MIN_SECONDS = 30.0

_RUNNING: ContextVar["TimeBudget | None"] = ContextVar("archiver_time_budget", default=None)


@dataclass
class TimeBudget:
    """How a pack spends its time limit (seconds; ``deadline`` on ``time.monotonic()``'s clock)."""

    limit: float
    deadline: float
    measure: float  #: the coding loop's own work, besides refinement
    write: float  #: tables, entropy coding, writing
    denoiser: float  #: the denoiser's share (0: not asked)
    train: float  #: training's time limit
    refine_time: float = 0.0  #: an explicit --refine-time (0: what the clock leaves)
    denoiser_time: float = 0.0  #: an explicit denoiser_time (0: its share)
    refine_cost: float | None = None  #: the codec's seconds per pixel-step of refinement, before any is measured
    refine: float = 0.0  #: refinement's budget, once training has ended
    cut: list[str] = field(default_factory=list)

    @classmethod
    def plan(cls, cfg, pixels: int, started: float | None = None) -> "TimeBudget":
        """The split of ``cfg.train.time_limit`` for a collection of ``pixels`` coded pixels, the clock
        starting at ``started`` (default: now)."""
        package = codec_package(cfg.codec)
        tc, mpx = cfg.train, pixels / 1e6
        limit = max(EFFORT_MIN_SECONDS, tc.effort * EFFORT_SECONDS_PER_MPX * mpx) if tc.effort else tc.time_limit
        measure = package.MEASURE_SECONDS_PER_MPX * mpx
        write = CODING_FIXED_SECONDS + package.WRITE_SECONDS_PER_MPX * mpx
        fixed = measure + write + TRAIN_OVERHEAD_SECONDS  # what training and refinement cannot have
        denoiser, cut = 0.0, []
        if tc.denoiser:
            denoiser = tc.denoiser_time + DENOISER_PASSES * measure if tc.denoiser_time else DENOISER_SHARE * limit
            if fixed + denoiser > (1 - WORK_MIN_SHARE) * limit:
                denoiser = max((1 - WORK_MIN_SHARE) * limit - fixed, 0.0)
                cut.append(f"denoiser: {denoiser:.0f} s, what coding leaves of the limit")
        work = max(limit - fixed - denoiser, WORK_MIN_SHARE * limit)
        if fixed + denoiser + work > limit + 0.5:
            cut.append(f"the limit itself: coding and writing need about {measure + write:.0f} s of its "
                       f"{limit:.0f} s, so the pack runs over it")  # fmt: skip
        if tc.refine_steps <= 0:
            refine = 0.0  # refinement off: training has all of it
        elif tc.refine_time:
            refine = min(tc.refine_time, (1 - TRAIN_MIN_SHARE) * work)
        else:
            refine = package.REFINE_TIME_FACTOR * work
        cost = getattr(package, "REFINE_SECONDS_PER_MPX_STEP", None)
        return cls(limit, (time.monotonic() if started is None else started) + limit, measure, write, denoiser,
                   work - refine, tc.refine_time, tc.denoiser_time if tc.denoiser else 0.0,
                   cost / 1e6 if cost else None, cut=cut)  # fmt: skip

    @property
    def reserve(self) -> float:
        """Seconds kept for coding, measuring and writing."""
        return self.measure + self.write

    def remaining(self) -> float:
        """Seconds to the deadline (negative past it)."""
        return self.deadline - time.monotonic()

    def training(self, cfg):
        """``cfg`` with training's share as its time limit (what the training loop reads)."""
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, time_limit=max(self.train, 1e-3)))

    def refine_budget(self, max_steps: int, pixels: int):
        """The :class:`~archiver.model.refine.RefineBudget` of the coding loop that starts now: what the
        clock leaves before the denoiser's share and writing, less the loop's own measuring (at most
        ``--refine-time``), its deadline that point."""
        from .model.refine import RefineBudget

        end = self.deadline - self.denoiser - self.write
        planned = max(end - time.monotonic() - self.measure, 0.0)
        # Without --refine-time the deadline binds, not the plan: the loop measures its own other work
        # (its first image is priced with the reserve's estimate), so refinement takes whatever that
        # work leaves. On 400 crops at a 4-minute limit the estimate, made under load, was 94 s and
        # the loop's other work took about 28 s on the quiet machine: 70 s of the limit went unused.
        seconds = max(end - time.monotonic(), 0.0)
        if self.refine_time and max_steps > 0:
            if self.refine_time > planned + 0.5:
                self.cut.append(f"--refine-time: {planned:.0f} s of the {self.refine_time:.0f} s asked "
                                "(what the time limit leaves after training)")  # fmt: skip
            seconds = min(planned, self.refine_time)
        self.refine = min(seconds, planned) if max_steps > 0 else 0.0
        return RefineBudget(max_steps, seconds, pixels, cost=self.refine_cost, deadline=end, other=self.measure)

    def denoiser_seconds(self, pass_seconds: float | None = None) -> float:
        """The denoiser's training time from now: what the clock leaves before its verdict pass and
        writing (at most ``denoiser_time`` when given). ``pass_seconds``: what the caller's pass over
        the collection for the training pairs took, which prices the verdict pass (it decodes again
        and runs the filter: :data:`VERDICT_PASSES` of it); None: the reserve's estimate."""
        if pass_seconds is not None:
            verdict = VERDICT_PASSES * pass_seconds
        else:
            verdict = (DENOISER_PASSES - 1) * self.measure
        left = max(self.remaining() - self.write - verdict, 0.0)
        wanted = self.denoiser_time or left
        if wanted > left + 0.5:
            self.cut.append(f"denoiser: trained {left:.0f} s of {wanted:.0f} s (what the time limit leaves)")
        return min(wanted, left)

    def summary(self, training: dict) -> dict:
        """JSON-able, for the training summary: the limit, each stage's seconds and what was cut
        (``training``: the summary so far, whose ``refine`` says how many steps images got)."""
        cut = list(self.cut)
        r = training.get("refine") or {}
        if r.get("max_steps") and r["mean_steps"] < r["max_steps"]:
            cut.append(f"refinement: {r['mean_steps']:.1f} of {r['max_steps']} steps per image on average")
        out = {"limit_s": round(self.limit, 1), "train_s": round(self.train, 1), "refine_s": round(self.refine, 1),
               "reserve_s": round(self.reserve, 1)}  # fmt: skip
        if self.denoiser:
            out["denoiser_s"] = round(self.denoiser, 1)
        out["cut"] = cut
        return out


def current(cfg, pixels: int = 0) -> TimeBudget:
    """The running pack's budget, or (outside :func:`running`) a new one whose clock starts now."""
    return _RUNNING.get() or TimeBudget.plan(cfg, pixels)


@contextmanager
def running(budget: TimeBudget) -> Iterator[TimeBudget]:
    """Make ``budget`` the one :func:`current` returns while the block runs."""
    token = _RUNNING.set(budget)
    try:
        yield budget
    finally:
        _RUNNING.reset(token)
