"""CIFAR-10-C corruptions of test images (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019).

All 15 standard corruptions and the 4 extra ones, with the severity constants of the authors'
``make_cifar_c.py`` (github.com/hendrycks/robustness), reimplemented for 32×32 images with
numpy/scipy/PIL only and vectorised over the batch:

- noise: gaussian_noise x + N(0, c²); shot_noise Poisson(x·c)/c; impulse_noise salt & pepper on
  a fraction c of the values; speckle_noise x + x·N(0, c²)
- blur: defocus_blur (anti-aliased disk kernel); glass_blur (Gaussian blur, local pixel copies
  — the published code's "swaps" copy one way —, Gaussian blur); motion_blur (ImageMagick's
  one-sided Gaussian line kernel of width 2·radius+1 at a random angle in [−45°, 45°]);
  zoom_blur (mean of the image and its centre zooms by 1, 1.01, …, scipy ``zoom``);
  gaussian_blur (Gaussian filter σ)
- weather: snow (a zoomed, thresholded, motion-blurred snow layer added twice, on a lightened
  image); frost (c₀·x + c₁·frost texture); fog (a diamond-square plasma fractal added, then
  rescaled); spatter (water drops over edges' distance map, or mud); brightness (+c on HSV value)
- digital: contrast ((x − mean)·c + mean); elastic_transform (random affine, then a smoothed
  random displacement field, both bilinear); pixelate (PIL box down- and up-sampling);
  jpeg_compression (PIL JPEG at quality c); saturate (HSV saturation ·a + b)

Deviations from the published set, each documented at its function: **frost** uses a synthetic
procedural frost texture (plasma haze plus motion-blurred crystal streaks) as a stand-in for the
authors' six frost photographs, so its images are *not* those of the published CIFAR-10-C;
motion blur and snow use an exact line-kernel convolution instead of an ImageMagick round trip
(motion_blur's output is truncated to uint8 where ImageMagick's PNG rounds; snow's blurred layer is
rounded to uint8 as the PNG is).

Plus additive Gaussian noise at any σ (TGD_METHOD.md §6). Images are N×H×W×C, uint8 or float in
[0, 1]; the result has the input's dtype and shape, clipped to [0, 1] (uint8 outputs are
truncated as CIFAR-10-C stores them: ``uint8(clip(x)·255)``). Colour corruptions (snow, frost,
spatter, brightness, saturate) need C = 3. Randomness comes from a ``numpy.random.Generator``
seeded by ``seed``, so equal seeds give equal images.

Sets: :data:`CORRUPTIONS` holds all 19 (the names :func:`corrupt` accepts);
:data:`CIFAR10C_STANDARD` (15) and :data:`CIFAR10C_EXTRA` (4) are the published groups,
:data:`FAMILIES` the paper's noise/blur/weather/digital grouping, and :data:`METHOD_SWEEP` the 7
corruptions TGD_METHOD.md §6 evaluates by default (the seven this engine offered first; the
default set of recipes, cheap enough for tests). :func:`corruption_set` expands group names.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from tgd_core.core.errors import TGDError

SEVERITIES = (1, 2, 3, 4, 5)
CIFAR_SIDE = 32  # the image side make_cifar_c.py's pixel constants are for

SEVERITY_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    # (disk radius, anti-alias σ)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (σ, max pixel shift, iterations)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (ImageMagick radius, σ)
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    # zoom factors np.arange(1, stop, 0.01)
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    # (layer mean, layer std, zoom, threshold, blur radius, blur σ, image weight)
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # (image weight, frost weight)
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (fog strength, plasma wibble decay)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    # (layer mean, layer std, layer σ, threshold, intensity σ, mud?)
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # (displacement α, displacement σ, affine jitter) as fractions of the image side
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    # (saturation scale, saturation shift)
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

CIFAR10C_STANDARD = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                     "glass_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog",
                     "brightness", "contrast", "elastic_transform", "pixelate",
                     "jpeg_compression")
CIFAR10C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
# TGD_METHOD.md §6: "Gaussian, shot, impulse noise, blur, contrast, JPEG" (the default sweep)
METHOD_SWEEP = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                "gaussian_blur", "contrast", "jpeg_compression")
NEEDS_RGB = frozenset({"snow", "frost", "spatter", "brightness", "saturate"})

Rng = np.random.Generator
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma, as cv2's RGB2GRAY
WATER_RGB = np.array([175, 238, 238]) / 255  # pale turquoise
MUD_RGB = np.array([63, 42, 20]) / 255  # brown


def corruption_set(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Corruption names from names or group names, groups expanded in place, duplicates dropped:
    ``method`` (:data:`METHOD_SWEEP`), ``standard`` (15), ``extra`` (4), ``all`` (19) or a family
    (``noise``, ``blur``, ``weather``, ``digital``); e.g. ``["standard", "saturate"]``."""
    chosen: dict[str, None] = {}
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str) or (name not in GROUPS and name not in CORRUPTIONS):
            raise TGDError(f"unknown corruption or group {name!r}; choose from "
                           f"{sorted(GROUPS)} or {sorted(CORRUPTIONS)}")
        chosen.update(dict.fromkeys(GROUPS.get(name, (name,))))
    return tuple(chosen)


def family_of(name: str) -> str:
    """The family (noise, blur, weather, digital) of corruption ``name``."""
    for family, names in FAMILIES.items():
        if name in names:
            return family
    raise TGDError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")


# ---------------------------------------------------------------- conversions and shared helpers

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


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats as the nearest uint8 (the PIL images the published code works on)."""
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _gauss_taps(sigma: float, size: int) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(size, sigma)`` (normalised sampled Gaussian)."""
    t = np.arange(size) - (size - 1) / 2
    taps = np.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum()


def _spatial_gaussian(x: np.ndarray, sigma: float, mode: str = "nearest",
                      truncate: float = 4.0) -> np.ndarray:
    """skimage ``filters.gaussian`` over H and W only of N×H×W(×C) arrays."""
    sigmas = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigma=sigmas, mode=mode, truncate=truncate)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre ⌈side/factor⌉ pixels of N×H×W(×C) images by ``factor`` and crop the middle
    H×W (make_cifar_c.py's ``clipped_zoom``), as scipy ``zoom(order=1)`` does it, per axis."""
    for axis in (1, 2):
        x = _zoom_axis(x, axis, factor)
    return x


def _zoom_axis(x: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """One axis of :func:`_clipped_zoom`: crop the centre ⌈n/factor⌉ samples, resample them
    linearly to round(⌈n/factor⌉·factor) samples with scipy's end-aligned grid (output o reads
    input o·(in − 1)/(out − 1)), and keep the middle n."""
    n = x.shape[axis]
    kept = int(np.ceil(n / factor))
    crop = np.take(x, np.arange((n - kept) // 2, (n - kept) // 2 + kept), axis=axis)
    out_len = int(round(kept * factor))
    first = (out_len - n) // 2
    coords = np.arange(first, first + n) * ((kept - 1) / (out_len - 1) if out_len > 1 else 0.0)
    low = np.minimum(np.floor(coords).astype(int), kept - 1)
    high = np.minimum(low + 1, kept - 1)
    weight = (coords - low).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return np.take(crop, low, axis=axis) * (1 - weight) + np.take(crop, high, axis=axis) * weight


def motion_kernel(radius: float, sigma: float, angle_deg: np.ndarray) -> tuple:
    """ImageMagick ``MotionBlurImage``'s kernel: width 2·⌈radius⌉+1 one-sided Gaussian taps
    exp(−i²/2σ²) (normalised) at offsets (⌈i·cos θ − ½⌉, ⌈i·sin θ − ½⌉) in (x, y), one angle θ per
    image. Returns (taps (width,), dx (N, width), dy (N, width))."""
    i = np.arange(2 * int(np.ceil(radius)) + 1)
    taps = np.exp(-(i**2) / (2 * sigma**2))
    theta = np.deg2rad(np.asarray(angle_deg, dtype=np.float64))[:, None]
    dx = np.ceil(i * np.cos(theta) - 0.5).astype(int)
    dy = np.ceil(i * np.sin(theta) - 0.5).astype(int)
    return taps / taps.sum(), dx, dy


def _motion_blur_batch(x: np.ndarray, radius: float, sigma: float,
                       angle_deg: np.ndarray) -> np.ndarray:
    """Line-kernel motion blur of N×H×W(×C) images, each at its own angle, edge-replicated."""
    taps, dx, dy = motion_kernel(radius, sigma, angle_deg)
    n, h, w = x.shape[:3]
    images = np.arange(n)[:, None, None]
    out = np.zeros_like(x, dtype=np.float64)
    for j, tap in enumerate(taps):
        rows = np.clip(np.arange(h)[None, :, None] + dy[:, j, None, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None, None, :] + dx[:, j, None, None], 0, w - 1)
        out += tap * x[images, rows, cols]
    return out


def plasma_fractal(n: int, size: int, decay: float, rng: Rng) -> np.ndarray:
    """``n`` diamond-square plasma fractals of side ``size`` (a power of two), each in [0, 1].

    The square step sets each cell centre to the mean of its 4 corners plus a uniform jitter of
    amplitude wibble² (wibble starts at 100 and is divided by ``decay`` per level); the diamond
    step sets each edge midpoint from its 2 corners and 2 neighbouring centres; the map wraps
    around (make_cifar_c.py's ``plasma_fractal``, batched).
    """
    grid = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def jittered(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        around = corners + np.roll(corners, -1, 1)
        grid[:, half::step, half::step] = jittered(around + np.roll(around, -1, 2))
        centres = grid[:, half::step, half::step]
        grid[:, ::step, half::step] = jittered(
            corners + np.roll(corners, -1, 2) + centres + np.roll(centres, 1, 1))
        grid[:, half::step, ::step] = jittered(
            corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 2))
        step //= 2
        wibble /= decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def _plasma_for(x: np.ndarray, decay: float, rng: Rng) -> np.ndarray:
    """One plasma fractal per image of ``x``, cropped to H×W, as N×H×W×1."""
    n, h, w = x.shape[:3]
    size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    return plasma_fractal(n, size, decay, rng)[:, :h, :w, None]


def _fold(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Integer pixel indices folded into [0, size) by the border rule: "mirror" (reflect-101,
    cv2's default) or "reflect" (half-sample symmetric). Folds the range the indices span once
    and looks them up."""
    low = min(int(index.min()), 0)
    span = np.arange(low, max(int(index.max()), size - 1) + 1)
    period = max(2 * size - 2, 1) if mode == "mirror" else 2 * size
    if mode == "mirror":
        span = np.abs(span) % period
        table = np.where(span >= size, period - span, span)
    else:
        span = np.mod(span, period)
        table = np.where(span >= size, period - 1 - span, span)
    return table[index - low]


def _sample_bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """N×H×W×C images sampled bilinearly at per-image N×H×W coordinates (row, col)."""
    n, h, w = x.shape[:3]
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = ((t - t0)[..., None].astype(x.dtype) for t, t0 in ((rows, r0), (cols, c0)))
    r0, c0 = r0.astype(int), c0.astype(int)
    top, bottom = _fold(r0, h, mode), _fold(r0 + 1, h, mode)
    left, right = _fold(c0, w, mode), _fold(c0 + 1, w, mode)
    images = np.arange(n)[:, None, None]
    upper = x[images, top, left] * (1 - fc) + x[images, top, right] * fc
    lower = x[images, bottom, left] * (1 - fc) + x[images, bottom, right] * fc
    return upper * (1 - fr) + lower * fr


def _per_image_pil(x: np.ndarray, transform: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL ``transform`` to each image (uint8, grey or RGB); back to [0, 1] floats."""
    u8 = _to_uint8(x)
    out = np.empty_like(u8)
    for i, img in enumerate(u8):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        out[i] = np.asarray(transform(pil).convert(pil.mode)).reshape(img.shape)
    return out / 255.0


# ------------------------------------------------------------------------------------- noise

def _gaussian_noise(x: np.ndarray, sigma: float, rng: Rng) -> np.ndarray:
    return x + rng.normal(0.0, sigma, size=x.shape)


def _shot_noise(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    return rng.poisson(x * c) / c


def _impulse_noise(x: np.ndarray, amount: float, rng: Rng) -> np.ndarray:
    """skimage ``random_noise(mode="s&p", amount, salt_vs_pepper=0.5)``: per value, with its
    Bernoulli draws ``rng.random(shape) <= p`` (flipped, then salted)."""
    flipped = rng.random(x.shape) <= amount
    salted = rng.random(x.shape) <= 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _speckle_noise(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    """Multiplicative noise x + x·N(0, c²)."""
    return x + x * rng.normal(0.0, c, size=x.shape)


# -------------------------------------------------------------------------------------- blur

def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """CIFAR-10-C's anti-aliased disk: a normalised 17×17 disk blurred by a 3×3 Gaussian.

    As ``cv2.GaussianBlur(disk, (3, 3), alias_blur)`` on the float32 disk computes it (bit for
    bit): float32 taps, each pass ``centre·k₁ + (left + right)·k₀`` in float32 (cv2's small
    symmetric row and column filters), reflect-101 borders.
    """
    half = 8 if radius <= 8 else int(np.ceil(radius))
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    taps = _gauss_taps(alias_blur, ksize).astype(np.float32)
    for axis in (1, 0):
        padded = np.pad(disk, [(ksize // 2, ksize // 2) if a == axis else (0, 0) for a in (0, 1)],
                        mode="reflect")
        shifted = [np.take(padded, np.arange(k, k + disk.shape[axis]), axis=axis)
                   for k in range(ksize)]
        mid = ksize // 2
        disk = shifted[mid] * taps[mid]
        for k in range(mid - 1, -1, -1):
            disk = disk + (shifted[k] + shifted[ksize - 1 - k]) * taps[k]
    return disk


def _defocus_blur(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    kernel = disk_kernel(*params)
    # cv2.filter2D on each channel: correlation with reflect-101 borders ("mirror")
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def _gaussian_blur(x: np.ndarray, sigma: float, rng: Rng) -> np.ndarray:
    # skimage.filters.gaussian(multichannel=True): spatial σ only, mode "nearest", truncate 4
    return _spatial_gaussian(x, sigma)


def _glass_blur(x: np.ndarray, params: tuple[float, int, int], rng: Rng) -> np.ndarray:
    """Blur, quantise to uint8, then for each pixel (h, w) from the bottom-right corner inwards
    copy into it the pixel at (h + dy, w + dx), dx, dy uniform in [−δ, δ), ``iterations``
    times (sequential within an image, independent across images), and blur again.

    A copy, not a swap, as the published CIFAR-10-C was made: ``make_cifar_c.py`` writes
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views, which copies x[h', w'] into
    x[h, w] and then writes that same value back into x[h', w'] (a true swap differs from the
    published images by 25 grey levels on average at severity 1)."""
    sigma, delta, iterations = params
    u8 = (np.clip(_spatial_gaussian(x, sigma), 0, 1) * 255).astype(np.uint8)
    n, h, w = x.shape[:3]
    positions = [(r, c) for r in range(h - delta, delta, -1) for c in range(w - delta, delta, -1)]
    shifts = rng.integers(-delta, delta, size=(iterations, len(positions), 2, n))
    images = np.arange(n)
    for it in range(iterations):
        for (r, c), (dx, dy) in zip(positions, shifts[it], strict=True):
            u8[:, r, c] = u8[images, r + dy, c + dx]
    return _spatial_gaussian(u8 / 255.0, sigma)


def _motion_blur(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    """ImageMagick ``-motion-blur radius×σ`` at an angle uniform in [−45°, 45°] per image, as a
    line-kernel convolution (:func:`motion_kernel`) with edge-replicated borders."""
    angles = rng.uniform(-45, 45, size=len(x))
    return _motion_blur_batch(x, *params, angles)


def _zoom_blur(x: np.ndarray, stop: float, rng: Rng) -> np.ndarray:
    """Mean of the image and its centre zooms by every factor of ``np.arange(1, stop, 0.01)``
    (7 to 26 zooms), in float32 as published: each zoom computed in float64 and rounded to
    float32 (scipy ``zoom`` on float32), summed from zero, then (x + sum) / (zooms + 1)."""
    factors = np.arange(1, stop, 0.01)
    x = x.astype(np.float32)
    wide = x.astype(np.float64)
    total = np.zeros_like(x)
    for factor in factors:
        total += _clipped_zoom(wide, factor).astype(np.float32)
    return (x + total) / np.float32(len(factors) + 1)


# ----------------------------------------------------------------------------------- weather

def _snow(x: np.ndarray, params: tuple, rng: Rng) -> np.ndarray:
    """A N(mean, std²) snow layer per image, centre-zoomed, zeroed below the threshold, quantised
    to uint8 and motion-blurred at an angle uniform in [−135°, −45°] (rounded to uint8 as the
    published PNG round trip does); added to the image (lightened towards 1.5·grey + 0.5 by
    1 − weight, in float32 as published) together with its 180° rotation."""
    mean, std, zoom, threshold, radius, sigma, weight = params
    n, h, w = x.shape[:3]
    layer = _clipped_zoom(rng.normal(mean, std, size=(n, h, w)), zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8) / 255.0
    layer = _motion_blur_batch(layer, radius, sigma, rng.uniform(-135, -45, size=n))
    layer = _to_uint8(layer)[..., None] / 255.0
    return _lighten(x.astype(np.float32), weight) + layer + np.rot90(layer, 2, axes=(1, 2))


def _lighten(x: np.ndarray, weight: float) -> np.ndarray:
    """snow's w·x + (1 − w)·max(x, 1.5·grey + 0.5) of float32 RGB, in float32 as published."""
    grey = _grey_float32(x)[..., None] * np.float32(1.5) + np.float32(0.5)
    return np.float32(weight) * x + np.float32(1 - weight) * np.maximum(x, grey)


def _grey_float32(x: np.ndarray) -> np.ndarray:
    """cv2 ``cvtColor(x, COLOR_RGB2GRAY)`` of float32 N×H×W×3, bit for bit as its fused
    multiply-add kernel computes it (x86-64 with FMA): fma(B, 0.114, fma(R, 0.299, G·0.587)),
    each fma rounded once to float32 (float32 products are exact in float64)."""
    wr, wg, wb = (np.float64(np.float32(v)) for v in GREY_WEIGHTS)
    partial = (x[..., 0] * wr + (x[..., 1] * np.float32(wg)).astype(np.float64))
    return (x[..., 2] * wb + partial.astype(np.float32)).astype(np.float32)


def frost_texture(n: int, h: int, w: int, rng: Rng) -> np.ndarray:
    """A synthetic frost texture, N×H×W×3 in [0, 1]: a procedural stand-in for the authors' six
    frost photographs (not distributed with this engine), *not* the published one.

    An icy haze (a plasma fractal, decay 1.5, mapped to [0.25, 0.7]) plus crystal streaks: sparse
    seeds (5 % of the pixels) motion-blurred along two random directions, scaled so the brightest
    streak adds 0.6, tinted pale blue (0.85, 0.93, 1).
    """
    size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    haze = 0.25 + 0.45 * plasma_fractal(n, size, 1.5, rng)[:, :h, :w]
    seeds = (rng.random((n, h, w)) < 0.05).astype(np.float64)
    streaks = sum(_motion_blur_batch(seeds, 3, 2, rng.uniform(0, 360, size=n)) for _ in range(2))
    streaks /= np.maximum(streaks.max(axis=(1, 2), keepdims=True), 1e-12)
    return np.clip(haze + 0.6 * streaks, 0, 1)[..., None] * np.array([0.85, 0.93, 1.0])


def _frost(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    """c₀·x + c₁·frost, with the synthetic :func:`frost_texture` (see the module docstring)."""
    image_weight, frost_weight = params
    return image_weight * x + frost_weight * frost_texture(*x.shape[:3], rng)


def _fog(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    """x + c·plasma, rescaled by max(x) / (max(x) + c) (max over each image)."""
    strength, decay = params
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + strength * _plasma_for(x, decay, rng)) * peak / (peak + strength)


def _spatter(x: np.ndarray, params: tuple, rng: Rng) -> np.ndarray:
    """A N(mean, std²) liquid layer per image, Gaussian-smoothed and zeroed below the threshold:
    water drops (pale turquoise, shaded by the distance to the drops' edges) or mud (brown).
    Pixels in float32 as published."""
    mean, std, sigma, threshold, intensity, mud = params
    n, h, w = x.shape[:3]
    liquid = _spatial_gaussian(rng.normal(mean, std, size=(n, h, w)), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        return _mud(x.astype(np.float32), liquid > threshold, intensity)
    return _water(x.astype(np.float32), liquid, intensity)


def _mud(x: np.ndarray, drops: np.ndarray, sigma: float) -> np.ndarray:
    """Mud: the drop mask smoothed by σ (float32), kept where ≥ 0.8, blends the image towards
    brown: x·(1 − m) + brown·m in float32."""
    mask = _spatial_gaussian(drops.astype(np.float32), sigma)
    mask[mask < 0.8] = 0
    mask = mask[..., None]
    return x * (1 - mask) + MUD_RGB.astype(np.float32) * mask


def _water(x: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    """Water, as make_cifar_c.py's cv2 pipeline computes it: the uint8 liquid layer L; the
    distance D to L's Canny edges (50, 150), 5×5 chamfer, truncated at 20, 3×3 box-blurred and
    cast to uint8; D equalised, embossed (uint8) and 3×3 box-blurred (uint8); L·D normalised
    per image to ``intensity`` adds pale turquoise, in float32. Layer values above 1 wrap
    around in the uint8 cast (⌊255·v⌋ mod 256), as the published cast does on x86-64 (severity
    3's layer reaches them in about 1 image in 8)."""
    layer = (np.floor(liquid * 255).astype(np.int64) % 256).astype(np.uint8)
    dist = np.minimum(_chamfer_distance(_canny(layer, 50, 150)), np.float32(20))
    dist = _box3_float32(dist).astype(np.uint8)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = ndimage.correlate(_equalize(dist).astype(np.int32), emboss[None], mode="mirror")
    dist = _box3_uint8(np.clip(dist, 0, 255)).astype(np.float32)
    shade = layer * dist
    peak = shade.max(axis=(1, 2), keepdims=True)
    shade = np.where(peak > 0, shade / np.where(peak > 0, peak, 1), 0) * np.float32(intensity)
    return x + shade[..., None] * WATER_RGB.astype(np.float32)


def _box3_float32(x: np.ndarray) -> np.ndarray:
    """cv2 ``blur(x, (3, 3))`` of float32 N×H×W images: the 3×3 sum (reflect-101 borders) in
    float64, times 1/9, rounded to float32."""
    total = ndimage.correlate(x.astype(np.float64), np.ones((1, 3, 3)), mode="mirror")
    return (total * (1 / 9)).astype(np.float32)


def _box3_uint8(x: np.ndarray) -> np.ndarray:
    """cv2 ``blur(x, (3, 3))`` of uint8-valued N×H×W images: the 3×3 integer sum (reflect-101
    borders) / 9, rounded to the nearest level (never a tie), as uint8."""
    total = ndimage.correlate(x.astype(np.int32), np.ones((1, 3, 3), np.int32), mode="mirror")
    return ((2 * total + 9) // 18).astype(np.uint8)


CANNY_TG22 = 13573  # cv2 Canny: round(tan 22.5° · 2¹⁵)
CANNY_SHIFT = 15


def _canny(layer: np.ndarray, low: float, high: float) -> np.ndarray:
    """cv2 ``Canny(layer, low, high)`` (aperture 3, L1 gradient) of N×H×W uint8 images, bit for
    bit: 3×3 Sobel gradients with replicated borders; magnitude |gx| + |gy|; non-maximum
    suppression along cv2's 4 directions (its fixed-point tan 22.5° test; ties go to the left
    or upper pixel; zero magnitude outside the image); pixels above ``high`` seed, and the
    suppressed-maxima above ``low`` 8-connected to a seed join them. Returns the edge mask."""
    p = np.pad(layer.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = layer.shape[1:]

    def at(dr: int, dc: int, a: np.ndarray = p) -> np.ndarray:
        return a[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    gx = sum(k * (at(r, 1) - at(r, -1)) for r, k in ((-1, 1), (0, 2), (1, 1)))
    gy = sum(k * (at(1, c) - at(-1, c)) for c, k in ((-1, 1), (0, 2), (1, 1)))
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    tg22 = np.abs(gx) * CANNY_TG22
    steep = np.abs(gy) << CANNY_SHIFT
    across = mag > np.maximum(at(0, -1, m), at(0, 1, m) - 1)  # m > left and m ≥ right
    along = mag > np.maximum(at(-1, 0, m), at(1, 0, m) - 1)  # m > up and m ≥ down
    s = np.where((gx < 0) != (gy < 0), -1, 1)
    diagonal = (mag > np.where(s > 0, at(-1, -1, m), at(-1, 1, m))) & (
        mag > np.where(s > 0, at(1, 1, m), at(1, -1, m)))
    maxima = np.where(steep < tg22, across,
                      np.where(steep > tg22 + (np.abs(gx) << (CANNY_SHIFT + 1)), along, diagonal))
    candidate = maxima & (mag > int(np.floor(low)))
    strong = candidate & (mag > int(np.floor(high)))
    labels, count = ndimage.label(candidate, structure=np.pad(np.ones((1, 3, 3)), ((1, 1), (0, 0),
                                                                                  (0, 0))))
    keep = np.zeros(count + 1, bool)
    keep[labels[strong]] = True
    keep[0] = False
    return keep[labels]


CHAMFER_5 = np.array([1, 1.4, 2.1969], np.float32)  # cv2 DIST_L2 5×5 mask steps a, b, c


def _chamfer_distance(edges: np.ndarray) -> np.ndarray:
    """cv2 ``distanceTransform(255 − edges, DIST_L2, 5)`` of N×H×W masks, bit for bit as its
    (IPP) float32 two-pass 5×5 chamfer computes it: a forward raster pass then a backward one,
    each pixel the minimum of itself and its 8 mask neighbours already visited plus steps a, b,
    c (1, 1.4, 2.1969, added in float32); FLT_MAX where no edge is reachable."""
    a, b, c = CHAMFER_5
    n, h, w = edges.shape
    t = np.full((n, h + 4, w + 4), np.finfo(np.float32).max, np.float32)
    t[:, 2:h + 2, 2:w + 2][edges] = 0
    for rows, step in ((range(h), -1), (range(h - 1, -1, -1), 1)):
        for i in rows:
            r = i + 2
            prev, prev2 = t[:, r + step], t[:, r + 2 * step]
            near = np.minimum.reduce([prev2[:, 1:w + 1] + c, prev2[:, 3:w + 3] + c,
                                      prev[:, :w] + c, prev[:, 1:w + 1] + b, prev[:, 2:w + 2] + a,
                                      prev[:, 3:w + 3] + b, prev[:, 4:w + 4] + c])
            row = t[:, r]
            np.minimum(row[:, 2:w + 2], near, out=row[:, 2:w + 2])
            for j in range(2, w + 2) if step < 0 else range(w + 1, 1, -1):
                np.minimum(row[:, j], row[:, j + step] + a, out=row[:, j])
    return t[:, 2:h + 2, 2:w + 2]


def _equalize(u8: np.ndarray) -> np.ndarray:
    """cv2 ``equalizeHist`` per N×H×W uint8 image, bit for bit: with ``lowest`` the count of the
    lowest occupied level, lut = round((cdf − lowest)·s) in float32, s = 255 / (pixels − lowest)
    in float32 (ties to even); a constant image is left unchanged."""
    n = len(u8)
    levels = u8.reshape(n, -1).astype(np.int64) + 256 * np.arange(n)[:, None]
    hist = np.bincount(levels.ravel(), minlength=256 * n).reshape(n, 256)
    lowest = hist[np.arange(n), np.argmax(hist > 0, axis=1)][:, None]
    pixels = u8[0].size
    scale = np.float32(255) / np.where(pixels > lowest, pixels - lowest, 1).astype(np.float32)
    lut = np.rint((np.cumsum(hist, 1) - lowest).astype(np.float32) * scale)
    lut = np.where(pixels > lowest, np.clip(lut, 0, 255), np.arange(256)).astype(np.uint8)
    return np.take_along_axis(lut, u8.reshape(n, -1).astype(int), 1).reshape(u8.shape)


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """skimage ``rgb2hsv`` of …×3 RGB, with its arithmetic (bit for bit): V = max, S = ptp/V,
    H = ((G − B)/ptp, 2 + (B − R)/ptp or 4 + (R − G)/ptp as R, G or B is the max, the later
    winning ties) / 6 mod 1; H = S = 0 where ptp = 0."""
    value = x.max(-1)
    delta = np.ptp(x, axis=-1)
    flat = delta == 0
    safe = np.where(flat, 1.0, delta)
    red, green, blue = x[..., 0], x[..., 1], x[..., 2]
    hue = np.where(blue == value, 4.0 + (red - green) / safe,
                   np.where(green == value, 2.0 + (blue - red) / safe, (green - blue) / safe))
    hue = np.where(flat, 0.0, (hue / 6.0) % 1.0)
    saturation = np.where(flat, 0.0, delta / np.where(value == 0, 1.0, value))
    return np.stack([hue, saturation, value], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage ``hsv2rgb`` of …×3 HSV, with its arithmetic (bit for bit): sector ⌊6H⌋ mod 6
    picks (V, t, p), (q, V, p), (p, V, t), (p, q, V), (t, p, V) or (V, p, q)."""
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(hue * 6)
    f = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - f * saturation)
    t = value * (1 - (1 - f) * saturation)
    sector = sector.astype(np.uint8) % 6
    candidates = np.stack([value, p, q, t])
    # per sector, the candidate (V, p, q, t) of R: V q p p t V; G: t V V q p p; B: p p t V V q
    pick = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], np.uint8)
    return np.stack([np.take_along_axis(candidates, row[sector][None], 0)[0] for row in pick], -1)


def _brightness(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    """HSV value + c, clipped (skimage rgb2hsv → V + c → hsv2rgb)."""
    hsv = _rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv_to_rgb(hsv)


# ----------------------------------------------------------------------------------- digital

def _contrast(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _elastic_transform(x: np.ndarray, params: tuple[float, float, float], rng: Rng) -> np.ndarray:
    """A random affine warp (three points around the centre jittered uniformly by ±a, bilinear,
    reflect-101 borders), then a displacement field α·G_σ(U(−1, 1)) per axis (Gaussian with
    reflect borders, truncate 3; bilinear, reflect borders). α, σ, a are fractions of the side.
    Pixels in float32 as published."""
    alpha, sigma, jitter = (p * min(x.shape[1:3]) for p in params)
    x = _sample_bilinear(x.astype(np.float32), *_affine_source(x.shape, jitter, rng), "mirror")
    n, h, w = x.shape[:3]
    dx, dy = ((_spatial_gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, "reflect", 3)
               * alpha).astype(np.float32) for _ in range(2))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    # scipy map_coordinates on float32 interpolates in float64 and rounds once to float32
    return _sample_bilinear(x.astype(np.float64), rows + dy, cols + dx, "reflect").astype(
        np.float32)


def _affine_source(shape: tuple, jitter: float, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the source (row, col) of each output pixel under the affine map taking the
    points centre + (s, s), (s, −s), (−s, −s) (x, y; s = side // 3) to themselves plus uniform
    jitter in [−a, a] (cv2 ``getAffineTransform`` + ``warpAffine``)."""
    n, h, w = shape[:3]
    centre, s = np.array([w // 2, h // 2], dtype=np.float64), max(min(h, w) // 3, 1)
    src = np.stack([centre + s, centre + [s, -s], centre - s])
    dst = src + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    # inverse map: solve [dst | 1] · T = src for T (3×2) per image
    homogeneous = np.concatenate([dst, np.ones((n, 3, 1))], 2)
    inverse = np.linalg.solve(homogeneous, np.broadcast_to(src, dst.shape))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.stack([cols, rows, np.ones_like(rows)], -1).reshape(-1, 3) @ inverse
    out = out.reshape(n, h, w, 2)
    return out[..., 1], out[..., 0]


def _pixelate(x: np.ndarray, c: float, rng: Rng) -> np.ndarray:
    """PIL box downsampling to ⌊c·side⌋ then box upsampling back."""
    def pixelate(img: Image.Image) -> Image.Image:
        small = img.resize((max(int(img.width * c), 1), max(int(img.height * c), 1)), Image.BOX)
        return small.resize(img.size, Image.BOX)

    return _per_image_pil(x, pixelate)


def _jpeg(x: np.ndarray, quality: int, rng: Rng) -> np.ndarray:
    def round_trip(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf)

    return _per_image_pil(x, round_trip)


def _saturate(x: np.ndarray, params: tuple[float, float], rng: Rng) -> np.ndarray:
    """HSV saturation · scale + shift, clipped (skimage rgb2hsv → S' → hsv2rgb); grey pixels
    (S = 0) have hue 0 (red) and become (V, V·(1 − S'), V·(1 − S'))."""
    scale, shift = params
    hsv = _rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _hsv_to_rgb(hsv)


CORRUPTIONS: dict[str, Callable[[np.ndarray, object, Rng], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}
# named sets for sweeps (:func:`corruption_set`): the published groups, the method's default
# sweep, everything, and the four families
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(CORRUPTIONS), "standard": CIFAR10C_STANDARD, "extra": CIFAR10C_EXTRA,
    "method": METHOD_SWEEP, **FAMILIES}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """CIFAR-10-C corruption ``name`` at ``severity`` 1–5 of N×H×W×C images."""
    if name not in CORRUPTIONS:
        raise TGDError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise TGDError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    x = _to_float(images)
    if name in NEEDS_RGB and x.shape[-1] != 3:
        raise TGDError(f"{name} needs RGB images (C = 3), got C = {x.shape[-1]}")
    if x.shape[0] == 0:
        return np.asarray(images).copy()
    param = SEVERITY_PARAMS[name][severity - 1]
    return _from_float(CORRUPTIONS[name](x, param, np.random.default_rng(seed)), np.asarray(images))


def add_gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise N(0, σ²) on [0, 1] pixels, clipped (TGD_METHOD.md §6)."""
    if not sigma >= 0:
        raise TGDError(f"noise sigma must be >= 0, got {sigma!r}")
    x = _to_float(images)
    return _from_float(_gaussian_noise(x, sigma, np.random.default_rng(seed)), np.asarray(images))
