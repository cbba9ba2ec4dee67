"""Configuration as frozen, documented dataclasses.

The archive stores the full :class:`PackConfig` (``to_dict``) so that a reader knows exactly how the
decoder was built and how the archive was made.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .codec.geometry import STRIDE
from .codecs import CODEC_NAMES, DEFAULT_CODEC, LEGACY_CODEC, codec as codec_package
from .errors import InputError
from .serial import _Serializable

__all__ = [
    "MODEL_PRESETS",
    "MODEL_BPP_BUDGET",
    "ModelConfig",
    "TrainConfig",
    "PackConfig",
    "QUALITY_LEVELS",
    "parse_duration",
    "parse_size",
    "check_rate_options",
    "resolve_budget_quality",
    "config_for_quality",
]

#: ``--quality`` levels (1 smallest … 8 best); each codec maps them to its λ (``LAMBDAS`` of its
#: package). The loss is ``lambda * 255**2 * MSE + bpp`` (MSE on [0, 1] pixels).
QUALITY_LEVELS = tuple(range(1, 9))


@dataclass(frozen=True)
class ModelConfig(_Serializable):
    """Shape of the residual convolutional encoder and decoder (``model``: read by the codec that has them).

    Attributes:
        latent_channels: channels C of the spatial latent (one latent vector per 16×16 pixels).
        widths: feature channels of the decoder stages at 1/16, 1/8, 1/4, 1/2 of full resolution;
            the encoder mirrors them.
        res_blocks: residual blocks after each of the first ``res_blocks`` decoder stages
            (0 = plain CAE, the ablation's baseline).
        residual: if False the residual blocks lose their skip connection (the ablation of residual
            learning: plain convolutional blocks).
        upsample: ``"nearest"`` (nearest ×2 then conv3) or ``"shuffle"`` (sub-pixel conv, ICNR init);
            both are free of checkerboard artefacts, ``nearest`` has 4× fewer decoder weights.
    """

    latent_channels: int = 64
    widths: tuple[int, int, int, int] = (64, 48, 32, 16)
    res_blocks: int = 2
    residual: bool = True
    upsample: str = "nearest"

    @property
    def stride(self) -> int:
        """Total downsampling of the latent grid, in pixels per latent position (per side)."""
        return STRIDE


#: Decoder sizes ``--model-size`` can name. ``large`` is the v1 default design (about 200 k weights).
MODEL_PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(latent_channels=16, widths=(16, 16, 8, 8), res_blocks=1),
    "small": ModelConfig(latent_channels=32, widths=(32, 24, 16, 8)),
    "base": ModelConfig(latent_channels=48, widths=(48, 32, 24, 16)),
    "large": ModelConfig(),
}
#: ``--model-size auto`` takes the largest preset whose weights (int8: one byte each) cost at most this
#: many bits per coded pixel of the collection: the decoder is paid for by every pixel, so a small
#: collection gets a small one. (v1 measured the large decoder at 0.31 bpp of model alone on 400
#: 128×128 crops, where JPEG needs about 0.3 bpp in all for the same PSNR.)
MODEL_BPP_BUDGET = 0.05


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How the codec is trained on one collection.

    Attributes:
        lmbda: rate–distortion weight (the codec's ``LAMBDAS`` of ``--quality``).
        crop: side of the square random training crops, in pixels (multiple of 16).
        batch: crops per step (of ``crop`` pixels a side; multiplied by (crop / actual crop)² when a
            collection of small images trains on smaller crops, so a step sees as many pixels).
        lr: Adam learning rate.
        time_limit: ``--time-limit``, in seconds: the whole pack's (training, refinement, coding,
            writing and the denoiser share it, :mod:`archiver.time_budget`); training itself runs
            with its share as ``time_limit``.
        effort: pack time per pixel instead of ``time_limit`` (0: ``time_limit`` decides): the
            whole pack's limit becomes ``effort`` × :data:`archiver.time_budget.EFFORT_SECONDS_PER_MPX`
            seconds per megapixel of the collection (at least
            :data:`~archiver.time_budget.EFFORT_MIN_SECONDS`).
        max_steps: cap on optimisation steps.
        check_every: K, the convergence window in steps: every K steps a linear regression over the
            last K losses and the change of the held-back PSNR are tested.
        slope_tol: converged if the fitted loss change over the window is below this fraction of the
            mean loss …
        psnr_tol: … and the held-back PSNR moved by less than this many dB since the last check.
        lr_drops: on convergence the learning rate is divided by 10 this many times before stopping.
        refine_steps: per-image latent refinement steps against the int8 decoder (0 = off; a large
            image is refined in 512-px tiles, and each keeps the best latent it saw).
        refine_time: budget in seconds for refining the whole collection, taken from ``time_limit``
            (0: what the time limit leaves after training, :mod:`archiver.time_budget`); when the
            collection is too large for ``refine_steps`` on every image within it, each image gets
            fewer, evenly (see :class:`archiver.model.refine.RefineBudget`).
        denoiser: train the optional post-filter after the codec (kept only if it earns its bytes).
        denoiser_time: its training budget in seconds, taken from ``time_limit`` (0: its share of it,
            :data:`archiver.time_budget.DENOISER_SHARE`).
        rate_weight: weight of the rate term in the loss (1 = λ·D + R; 0 trains on distortion only,
            the ablation "without rate term": the latents are still entropy-coded).
        perceptual: ``none``, ``msssim`` (1 − MS-SSIM) or ``lpips`` (needs user-supplied weights): a
            perceptual distance P added to the distortion as ``λ·255²·(MSE + perceptual_weight·P)``.
        perceptual_weight: weight of P against the MSE on [0, 1] pixels; the default makes both terms
            about equal near 28 dB (MSE ≈ 1.6e-3, 1 − MS-SSIM ≈ 0.05).
        gan: add the adversarial phase (PatchGAN, hinge loss, adaptive weight; see
            :mod:`archiver.model.adversarial`). The discriminator is not stored in the archive.
        gan_weight: λ_GAN, scaling the adaptive weight w = ‖∇L_rec‖ / max(‖∇L_G‖, ε).
        gan_start: step at which the discriminator starts (0: when the codec first converges or half
            of ``time_limit`` is used, whichever comes first).
        gan_margin_db: mode-collapse guard: a held-back PSNR drop larger than this many dB below its
            value at the phase's start restores the last good checkpoint and ends the phase.
        disc_width: channels of the discriminator's first layer (64 in the paper; the others double).
        warm_start: start from the general codec shipped for this architecture when there is one
            (the codec's shipped warm start; weights trained here on photos, see its recipe) instead
            of random weights. The archive stores its own fine-tuned decoder either way.
        image_tails: let large images learn their own delta to the synthesis' last layer while
            their latents are annealed, each kept only where it saves more than it costs (codecs
            that have them: the default's version 6).
        seed: seed of every random number generator used by pack.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
    """

    lmbda: float = 0.013  # level 4 of the first codec; config_for_quality sets the codec's own
    crop: int = 128
    batch: int = 8
    lr: float = 1e-3
    time_limit: float = 900.0
    effort: float = 0.0
    max_steps: int = 200_000
    check_every: int = 500
    slope_tol: float = 0.005
    psnr_tol: float = 0.02
    lr_drops: int = 2
    refine_steps: int = 30
    refine_time: float = 0.0
    rate_weight: float = 1.0
    denoiser: bool = False
    denoiser_time: float = 0.0
    perceptual: str = "none"
    perceptual_weight: float = 0.03
    gan: bool = False
    gan_weight: float = 0.1
    gan_start: int = 0
    gan_margin_db: float = 1.0
    disc_width: int = 64
    warm_start: bool = True
    image_tails: bool = True
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class PackConfig(_Serializable):
    """Everything that decides how an archive is made.

    Attributes:
        quality: the ``--quality`` level (1 smallest … 8 best): asked for, chosen from ``--target-psnr``
            or ``--max-bytes``, or the codec's ``DEFAULT_QUALITY``.
        model: architecture of the codec.
        train: training schedule and stopping rule.
        zstd_level: zstd level for byte-exact files, alpha planes, metadata and model weights.
        int8_weights: store the decoder's convolution weights as per-channel int8 (default) or, for
            the ablation, as float32.
        model_size: ``auto`` (chosen by pack from the collection's pixel count, see
            :data:`MODEL_BPP_BUDGET`), a :data:`MODEL_PRESETS` name, or ``custom`` (``model`` as given).
            An archive stores the resolved name and model.
        appendable: also store the int8 encoder (``/model/encoder``), so that ``append`` starts each
            new image's latent from it instead of searching from nothing: faster and closer to a
            repack, for the encoder's bytes (about as many as the decoder's).
        codec: the image codec trained (:data:`archiver.codecs.CODEC_NAMES`); the archive describes it
            separately in its ``codec`` attribute (:mod:`archiver.codecs`). ``model`` and
            ``model_size`` concern only a codec whose ``resolve`` reads them.
        self_contained: store the whole model even when training started from a shipped base codec
            (its codec's ``bases``); by default such an archive stores only its difference
            from the base (codecs with a base; the others always store their whole model).
        target_psnr: ``--target-psnr`` in dB (0: off): every image is coded at the lowest rate whose
            PSNR through the extract path is at least this (codecs with ``RATE_CONTROL``).
        max_bytes: ``--max-bytes`` (0: off): the whole archive is at most this many bytes
            (codecs with ``RATE_CONTROL``).
        target_baseline: benchmarks only (not a CLI option): with ``target_psnr``, also measure
            the same codec with one gain for every image whose worst image reaches the target
            (its bytes go to the training summary).
        auto_quality: ``quality`` was not given: with ``max_bytes``, pack chooses it from the budget
            per pixel (:func:`resolve_budget_quality`); ``target_psnr`` chose it already.
    """

    quality: int = 4
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    zstd_level: int = 19
    int8_weights: bool = True
    model_size: str = "auto"
    appendable: bool = False
    codec: str = DEFAULT_CODEC
    self_contained: bool = False
    target_psnr: float = 0.0
    max_bytes: int = 0
    target_baseline: bool = False
    auto_quality: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PackConfig":
        data = dict(data)
        data.setdefault("codec", LEGACY_CODEC)  # configs written before there was a choice of codec
        model = ModelConfig.from_dict(data.pop("model", {}))
        train = TrainConfig.from_dict(data.pop("train", {}))
        base = super().from_dict(data)
        return dataclasses.replace(base, model=model, train=train)


def config_for_quality(
    quality: int | None = None,
    *,
    time_limit: float = 900.0,
    seed: int = 0,
    device: str = "auto",
    model_size: str = "auto",
    appendable: bool = False,
    codec: str = DEFAULT_CODEC,
    self_contained: bool = False,
    target_psnr: float | None = None,
    max_bytes: int = 0,
    **train_overrides: Any,
) -> PackConfig:
    """The default :class:`PackConfig` for a ``--quality`` level (with ``target_psnr`` (None: not
    asked) or ``max_bytes`` (0: not asked), for ``--target-psnr`` / ``--max-bytes``: see
    :func:`check_rate_options`). ``quality`` None: chosen from ``target_psnr`` or ``max_bytes`` when
    one is asked, else the codec's ``DEFAULT_QUALITY``."""
    package = codec_package(codec)  # an unknown name is an InputError
    check_rate_options(codec, target_psnr, max_bytes)
    auto = quality is None and bool(target_psnr or max_bytes)
    if quality is None:
        quality = package.quality_for(target_psnr=target_psnr) if target_psnr else package.DEFAULT_QUALITY
    if model_size not in ("auto", "custom", *MODEL_PRESETS):
        raise InputError(f"--model-size must be auto or one of {', '.join(MODEL_PRESETS)}, got {model_size!r}")
    if quality not in QUALITY_LEVELS:
        raise InputError(f"--quality must be an integer from 1 to 8, got {quality}")
    if time_limit <= 0:
        raise InputError(f"--time-limit must be positive, got {time_limit} s")
    if train_overrides.get("effort", 0.0) < 0:
        raise InputError(f"--effort must be positive, got {train_overrides['effort']}")
    if train_overrides.get("perceptual", "none") not in ("none", "msssim", "lpips"):
        raise InputError(f"--perceptual must be none, msssim or lpips, got {train_overrides['perceptual']!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    train = TrainConfig(
        lmbda=package.LAMBDAS[quality], time_limit=float(time_limit), seed=seed, device=device, **train_overrides
    )
    model = MODEL_PRESETS.get(model_size, ModelConfig())
    return PackConfig(
        quality=quality, train=train, model=model, model_size=model_size, appendable=appendable, codec=codec,
        self_contained=self_contained, target_psnr=float(target_psnr or 0.0), max_bytes=int(max_bytes),
        auto_quality=auto,
    )


def resolve_budget_quality(cfg: PackConfig, pixels: int, rest: int) -> PackConfig:
    """With ``--max-bytes`` and no ``--quality``: ``cfg`` at the level whose measured bpp is nearest
    to what the budget leaves per coded pixel (the codec's ``quality_for``)."""
    if not (cfg.max_bytes and cfg.auto_quality and pixels):
        return cfg
    package = codec_package(cfg.codec)
    quality = package.quality_for(bpp=max(cfg.max_bytes - rest, 1) * 8 / pixels)
    train = dataclasses.replace(cfg.train, lmbda=package.LAMBDAS[quality])
    return dataclasses.replace(cfg, quality=quality, train=train)


#: Highest ``--target-psnr`` accepted, in dB: 8-bit images differing in one level at one pixel in
#: ten thousand are still at 88 dB, but no lossy codec promises more than 60 on photos.
MAX_TARGET_PSNR = 60.0


def check_rate_options(codec: str, target_psnr: float | None, max_bytes: int) -> None:
    """Refuse impossible ``--target-psnr`` (None: not asked) / ``--max-bytes`` (0: not asked)
    values (:class:`InputError`)."""
    if target_psnr is not None and not (math.isfinite(target_psnr) and 0 < target_psnr <= MAX_TARGET_PSNR):
        raise InputError(f"--target-psnr must be a PSNR in dB above 0 and at most {MAX_TARGET_PSNR:g}, got {target_psnr:g}")
    if target_psnr and max_bytes:
        raise InputError("--target-psnr and --max-bytes cannot be used together: choose a quality floor or a size")
    if (target_psnr or max_bytes) and not codec_package(codec).RATE_CONTROL:
        flag = "--target-psnr" if target_psnr else "--max-bytes"
        with_rates = ", ".join(n for n in CODEC_NAMES if codec_package(n).RATE_CONTROL)
        raise InputError(f"{flag} needs a codec with per-image rates (--codec {with_rates}), not {codec}")
    if max_bytes < 0:
        raise InputError(f"--max-bytes must be positive, got {max_bytes}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``123456``, ``500M``, ``4G``, ``1.5GB`` (powers of 1000) or ``4GiB``
    (powers of 1024). Raises :class:`InputError` otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"cannot read size {text!r}: give bytes or a unit, e.g. 500M, 4G, 4GiB")
    unit = (match.group(2) or "").lower()
    power = "kmgt".index(unit[0]) + 1 if unit else 0
    value = int(float(match.group(1)) * (1024 if unit.endswith("i") else 1000) ** power)
    if value <= 0:
        raise InputError(f"size {text!r} must be positive")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``2h``. Raises :class:`InputError` otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise InputError(f"cannot read time limit {text!r}: give seconds or a unit, e.g. 90, 15m, 2h")
    unit = match.group(2).lower() if match.group(2) else None
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise InputError(f"time limit {text!r} must be positive")
    return seconds
