"""The autoencoder's rate–distortion trade-off per ``--quality`` level (torch-free)."""

from __future__ import annotations

__all__ = ["LAMBDAS", "DEFAULT_QUALITY", "REFINE_TIME_FACTOR", "MEASURE_SECONDS_PER_MPX", "WRITE_SECONDS_PER_MPX"]

#: Rate–distortion trade-off per ``--quality`` level (1 smallest … 8 best). The loss is
#: ``lambda * 255**2 * MSE + bpp`` (MSE on [0, 1] pixels), the convention of CompressAI's presets.
LAMBDAS: dict[int, float] = {
    1: 0.0018,
    2: 0.0035,
    3: 0.0067,
    4: 0.0130,
    5: 0.0250,
    6: 0.0483,
    7: 0.0932,
    8: 0.1800,
}

#: ``--quality`` when none is given: on the dataset regime (400 heldout crops of 128², ``tiny``, warm
#: start) q4 measured 27.37 dB at 0.258 bpp, and q6 and q8 ended below it (26.87 and 26.97 dB):
#: higher levels buy this codec nothing (benchmarks/results/rd-dataset-heldout.md).
DEFAULT_QUALITY = 4

#: ``--time-limit`` bounds the whole pack (:mod:`archiver.time_budget`): of the time left once the
#: reserve for coding and writing (and the denoiser's share) is set aside, refinement (the encoder's
#: latent refined by Adam) gets this fraction by default and training the rest: the proportions of
#: the time limit plus half of it on top that it had before the limit bounded the whole pack.
REFINE_TIME_FACTOR = 1 / 3
#: Reserve per megapixel for each image's encoding and measurement through the ONNX runtime, and
#: for the context tables, entropy coding and writing (measured as the pyramid's: 100 crops of 128²
#: on the 2-core machine, refinement off: 13.9 s of CPU for the loop, 8.5 s/Mpx; 0.45 s for the
#: tables and writing, 0.3 s/Mpx).
MEASURE_SECONDS_PER_MPX = 6.0
WRITE_SECONDS_PER_MPX = 1.0
