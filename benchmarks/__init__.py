"""Rate–distortion benchmark helpers for the archiver.

Modules:
    regimes  -- reproducible dataset recipes ("dataset", "album", "tiny") cut from a folder of PNG photos.
    metrics  -- PSNR, MS-SSIM, Bjøntegaard delta rate, rate needed to reach a target quality.
    classic  -- sweep of classic codecs (JPEG, WebP, AVIF, JPEG XL) through Pillow.

Nothing here imports the ``archiver`` package; the neural half of the benchmark can reuse these.
"""

__all__ = ["classic", "metrics", "regimes"]
