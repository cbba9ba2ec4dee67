"""The project's benchmarks (run from the repository root, results in ``benchmarks/results/``).

Modules:
    regimes  -- reproducible dataset recipes ("dataset", "album", "tiny") cut from a folder of PNG photos.
    rd       -- rate–distortion of one regime against JPEG, WebP, AVIF and JPEG XL (the comparison
                itself lives in ``archiver.bench``, which ``archiver bench SRC`` offers users).
    ablation -- the seeds' ablations on the dataset regime.
    speed    -- extraction speed and memory; fuzz -- a longer reader fuzz.
"""

__all__ = ["ablation", "fuzz", "rd", "regimes", "speed"]
