"""Rate–distortion comparison of the archiver with JPEG, WebP, AVIF and JPEG XL (``archiver bench``).

Modules:
    metrics  -- PSNR, MS-SSIM, Bjøntegaard delta rate, rate needed to reach a target quality.
    classic  -- sweep of classic codecs (JPEG, WebP, AVIF, JPEG XL) through Pillow.
    compare  -- archiver points, BD-rate table, markdown report and plot.
    folder   -- ``archiver bench SRC``: all of it on a user's folder.

Needs the ``bench`` extra (matplotlib, pytorch-msssim, pillow-jxl-plugin, scipy).
"""

__all__ = ["classic", "compare", "folder", "metrics"]
