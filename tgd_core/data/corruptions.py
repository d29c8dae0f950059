"""CIFAR-10-C corruptions of test images (Hendrycks & Dietterich, ICLR 2019).

Definitions and severity constants follow the authors' ``make_cifar_c.py``
(github.com/hendrycks/robustness), reimplemented with numpy/scipy/PIL only:

- gaussian_noise: x + N(0, c²), c = .04 .06 .08 .09 .10
- shot_noise: Poisson(x·c)/c, c = 500 250 100 75 50
- impulse_noise: salt & pepper on a fraction c of the values, c = .01 .02 .03 .05 .07
- defocus_blur: anti-aliased disk kernel (radius, alias σ) = (.3,.4) (.4,.5) (.5,.6) (1,.2) (1.5,.1)
- gaussian_blur: Gaussian filter σ = .4 .6 .7 .8 1 (edge mode "nearest", truncate 4)
- contrast: (x − mean)·c + mean per image and channel, c = .75 .5 .4 .3 .15
- jpeg_compression: PIL JPEG at quality 80 65 58 50 40

plus additive Gaussian noise at any σ (TGD_METHOD.md §6). Images are N×H×W×C, uint8 or float in
[0, 1]; the result has the input's dtype and shape, clipped to [0, 1] (uint8 outputs are
truncated as CIFAR-10-C stores them: ``uint8(clip(x)·255)``). Randomness comes from a
``numpy.random.Generator`` seeded by ``seed``, so equal seeds give equal images.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from tgd_core.core.errors import TGDError

SEVERITIES = (1, 2, 3, 4, 5)
SEVERITY_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

Rng = np.random.Generator


def _to_float(images: np.ndarray) -> np.ndarray:
    """Validate N×H×W×C images and return them as float64 in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise TGDError(f"expected N×H×W×C images, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise TGDError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or np.isnan(images).any()):
        raise TGDError("float images must lie in [0, 1]")
    return images.astype(np.float64)


def _from_float(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    if like.dtype == np.uint8:
        return (x * 255).astype(np.uint8)
    return x.astype(like.dtype)


def _gaussian_noise(x: np.ndarray, sigma: float, rng: Rng) -> np.ndarray:
    return x + rng.normal(0.0, sigma, size=x.shape)


def _shot_noise(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    return rng.poisson(x * c) / c


def _impulse_noise(x: np.ndarray, amount: float, rng: Rng) -> np.ndarray:
    """skimage ``random_noise(mode="s&p", amount, salt_vs_pepper=0.5)``: per value."""
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _gauss_taps(sigma: float, size: int) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(size, sigma)`` (normalised sampled Gaussian)."""
    t = np.arange(size) - (size - 1) / 2
    taps = np.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum()


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """CIFAR-10-C's anti-aliased disk: a normalised 17×17 disk blurred by a 3×3 Gaussian.

    As ``cv2.GaussianBlur(disk, (3, 3), alias_blur)`` with its default border (reflect-101,
    scipy's "mirror").
    """
    half = 8 if radius <= 8 else int(np.ceil(radius))
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    taps = _gauss_taps(alias_blur, ksize)
    disk = ndimage.correlate1d(disk, taps, axis=0, mode="mirror")
    return ndimage.correlate1d(disk, taps, axis=1, mode="mirror")


def _defocus_blur(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    kernel = disk_kernel(*params)
    # cv2.filter2D on each channel: correlation with reflect-101 borders ("mirror")
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def _gaussian_blur(x: np.ndarray, sigma: float, rng: Rng) -> np.ndarray:
    # skimage.filters.gaussian(multichannel=True): spatial σ only, mode "nearest", truncate 4
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _contrast(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _jpeg(x: np.ndarray, quality: int, rng: Rng) -> np.ndarray:
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    out = np.empty_like(u8)
    for i, img in enumerate(u8):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=quality)
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert(pil.mode)).reshape(img.shape)
    return out / 255.0


CORRUPTIONS: dict[str, Callable[[np.ndarray, object, Rng], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "jpeg_compression": _jpeg,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """CIFAR-10-C corruption ``name`` at ``severity`` 1–5 of N×H×W×C images."""
    if name not in CORRUPTIONS:
        raise TGDError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise TGDError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    x = _to_float(images)
    param = SEVERITY_PARAMS[name][severity - 1]
    return _from_float(CORRUPTIONS[name](x, param, np.random.default_rng(seed)), np.asarray(images))


def add_gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise N(0, σ²) on [0, 1] pixels, clipped (TGD_METHOD.md §6)."""
    if not sigma >= 0:
        raise TGDError(f"noise sigma must be >= 0, got {sigma!r}")
    x = _to_float(images)
    return _from_float(_gaussian_noise(x, sigma, np.random.default_rng(seed)), np.asarray(images))
