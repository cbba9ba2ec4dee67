"""The pyramid's rate–distortion trade-off per ``--quality`` level, and the level nearest a PSNR or
bpp a user asks for (torch-free)."""

from __future__ import annotations

import math

__all__ = ["LAMBDAS", "LEVEL_POINTS", "DEFAULT_QUALITY", "REFINE_TIME_FACTOR", "MEASURE_SECONDS_PER_MPX",
           "WRITE_SECONDS_PER_MPX", "REFINE_SECONDS_PER_MPX_STEP", "quality_for"]  # fmt: skip

#: λ per ``--quality`` level for ``--codec pyramid``: geometric from 0.002 (level 1) to 0.0856 (level
#: 7), ratio 1.87: the pyramid spends far more bits per λ than the autoencoder (one latent per pixel at
#: full size), and 0.05 gave 33.7 dB after 4 minutes of training on the dataset regime
#: (benchmarks/pyramid_probe.py). Level 8 is archival quality, ≥ 40 dB on photos: chosen on the album's
#: **train** split (48 photos, 8-minute packs, refinement included, 2026-12-06) as the first λ tried
#: whose mean PSNR cleared 40 dB by 0.2 dB (the margin for other photos and run-to-run spread):
#: λ 0.16 (the series' next term, level 8 until then) 1.970 bpp @ 39.37 dB, 0.21 2.116 @ 39.92,
#: 0.24 2.196 @ 40.01, 0.30 2.298 @ 40.28. The shipped bases were pretrained with 0.16 there; a pack
#: fine-tunes the level's quantization steps.
LAMBDAS: dict[int, float] = {q: round(0.002 * (80 ** ((q - 1) / 7)), 4) for q in range(1, 8)} | {8: 0.30}

#: ``--time-limit`` bounds the whole pack (:mod:`archiver.time_budget`): of the time left once the
#: reserve for coding and writing (and the denoiser's share) is set aside, refinement gets this
#: fraction by default and training the rest (0.45). Both stages return about as much per doubling
#: of their time: fine-tuning from the base gained ~2.5 % loss per doubling of steps, and the
#: relaxation went from −2.6 % to −6.4 % BD-rate for 3× the steps (~2.4 % per doubling), so an even
#: split is near the best; refinement gets the larger half because its first search trials are its
#: best (1.2 dB at 7.6 % fewer bits at q4 over the encoder's latent), because it is the stage a large
#: collection cuts (400 crops at q8 wanted ~15 minutes: relaxation and search take about 2.3 s per
#: 128² crop on 2 cores), and because it also inherits whatever training leaves when it converges
#: early (refinement's budget is what the clock leaves after training). Before the time limit bounded
#: the pack, the default was 8 minutes of training plus up to 16 of refinement (a factor 2 on top).
REFINE_TIME_FACTOR = 0.55
#: Reserve per megapixel (with ``CODING_FIXED_SECONDS`` of :mod:`archiver.time_budget`) for each
#: image's encoding and its measurement through the ONNX runtime extract uses (the coding loop's
#: work besides refinement: encoder, padding, runtime decode, the context network's counts), and for
#: the tables, entropy coding and writing after it. It sizes training's share and prices the first
#: image; from the second image on the refinement loop measures that work itself and keeps to its
#: deadline. Measured on the quiet 2-core machine, 400 heldout crops of 128² (6.55 Mpx) at a 4-minute
#: limit: everything besides training and refinement took about 25 s (3.8 s/Mpx, writing included).
#: 12 s/Mpx, measured before under a load average of 7–9, left 70 s of that limit unused and 210 s
#: of the album's 8 minutes.
MEASURE_SECONDS_PER_MPX = 5.0
WRITE_SECONDS_PER_MPX = 2.0
#: Refinement's seconds per megapixel and step (search trial, with its relaxation steps at q5 and
#: up), pricing the first image before one is measured (:class:`archiver.model.refine.RefineBudget`):
#: at q6 a 128² crop took 8.2 s of CPU for 30 trials but 2.6 s for 5 and 0.5 s for 1 (16.5 s of CPU
#: per megapixel-step at 30, 32 at a few: each image's search has a fixed cost), some 10–20 s of
#: wall time on 2 idle cores. Priced at 30, the demo's first image got 5 of 30 steps and the pack
#: left 40 % of its limit unused; priced at 10 under a load average of 7, a first image took 3 times
#: its time. So 15, with each image stopped at twice its share of the time left; the price measured
#: on the first image takes over from the second on.
REFINE_SECONDS_PER_MPX_STEP = 15.0

#: Whole-archive bpp and mean PSNR (dB) of ``--codec pyramid`` per ``--quality`` on the dataset
#: regime's heldout split (400 crops of 128², base pyramid-b3). Levels 2 and 4: 8-minute packs with the
#: integer search refinement on top (benchmarks/results/rd-dataset-pyramid-b3-relax-heldout-q2-q8.md;
#: with Adam refinement and pyramid-b2 they were 0.413 / 27.17, 0.898 / 31.36). Level 8: its λ of
#: 2026-12-06 (0.30), an 8-minute pack, refinement included (calibrate-dataset-heldout-q8.md; at λ
#: 0.16 it had been 2.096 / 40.19). Levels between are interpolated (PSNR linearly, bpp
#: geometrically). ``--target-psnr`` and ``--max-bytes`` without ``--quality`` fine-tune at the level
#: nearest to what they ask (:func:`quality_for`).
LEVEL_POINTS: dict[int, tuple[float, float]] = {2: (0.403, 29.01), 4: (0.806, 32.64), 8: (2.443, 41.40)}

#: ``--quality`` when none is given: where people keep photos, 35–37 dB mean PSNR. Chosen when q8's λ
#: was 0.16: the heldout album measured 32.22 dB at q4 and 39.71 dB at q8 (the dataset regime 32.64
#: and 40.19), so q6 landed near 36 dB by interpolation; measured since, an 8-minute pack of the heldout
#: album at q6 gave 35.57 dB (README, *Where it stands*). q6's λ did not change with q8's.
DEFAULT_QUALITY = 6


def quality_for(target_psnr: float = 0.0, bpp: float = 0.0) -> int:
    """The ``--quality`` whose mean PSNR (or log bpp) interpolated from :data:`LEVEL_POINTS`
    is nearest ``target_psnr`` (or ``bpp``); beyond the measured levels, the nearest measured one."""
    import numpy as np

    known = sorted(LEVEL_POINTS)
    if target_psnr:
        values, want = [LEVEL_POINTS[q][1] for q in known], target_psnr
    else:
        values, want = [math.log(LEVEL_POINTS[q][0]) for q in known], math.log(max(bpp, 1e-6))
    distance = np.abs(np.interp(np.arange(1, 9), known, values) - want)
    return 8 - int(np.argmin(distance[::-1]))  # ties (below the lowest measured level): the higher
