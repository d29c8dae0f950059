"""CIFAR-10-C corruptions (Hendrycks & Dietterich 2019): determinism, range, shape, severity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tgd_core.core.errors import TGDError
from tgd_core.data.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    SEVERITY_PARAMS,
    add_gaussian_noise,
    corrupt,
    disk_kernel,
)

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise"}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """16 smooth synthetic 32×32 RGB images spanning [0, 255] (uint8)."""
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.random((16, 32, 32, 3)), (0, 1.5, 1.5, 0))
    return ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())


def test_constants_are_cifar10c() -> None:
    assert set(CORRUPTIONS) == set(SEVERITY_PARAMS) == {
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "gaussian_blur",
        "contrast", "jpeg_compression"}
    assert SEVERITY_PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert SEVERITY_PARAMS["defocus_blur"][3] == (1, 0.2)
    assert SEVERITY_PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_deterministic_in_range_and_shape_preserving(images: np.ndarray, name: str) -> None:
    floats = images[:4].astype(np.float32) / 255
    for severity in SEVERITIES:
        a = corrupt(images, name, severity, seed=7)
        assert a.dtype == np.uint8 and a.shape == images.shape
        assert np.array_equal(a, corrupt(images, name, severity, seed=7))
        f = corrupt(floats, name, severity, seed=7)
        assert f.dtype == np.float32 and f.shape == floats.shape
        assert f.min() >= 0 and f.max() <= 1
        assert np.array_equal(f, corrupt(floats, name, severity, seed=7))
        assert not np.array_equal(a, images)
    if name in RANDOM:
        assert not np.array_equal(corrupt(images, name, 3, seed=1),
                                  corrupt(images, name, 3, seed=2))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_distortion_grows_with_severity(images: np.ndarray, name: str) -> None:
    mse = [_mse(corrupt(images, name, s, seed=3), images) for s in SEVERITIES]
    assert all(a < b for a, b in zip(mse, mse[1:])), mse


def test_gaussian_noise_statistics() -> None:
    grey = np.full((8, 32, 32, 3), 0.5)
    for severity, sigma in zip(SEVERITIES, SEVERITY_PARAMS["gaussian_noise"]):
        noise = corrupt(grey, "gaussian_noise", severity, seed=0) - 0.5
        assert noise.std() == pytest.approx(sigma, rel=0.03)
        assert abs(noise.mean()) < 3e-3


def test_shot_noise_is_poisson_around_the_pixel() -> None:
    grey = np.full((8, 32, 32, 3), 0.4)
    out = corrupt(grey, "shot_noise", 5, seed=0)  # Poisson(0.4·50)/50: mean 0.4, var 0.4/50
    assert out.mean() == pytest.approx(0.4, abs=2e-3)
    assert out.var() == pytest.approx(0.4 / 50, rel=0.05)
    assert np.allclose(out * 50, np.round(out * 50))


def test_impulse_noise_is_salt_and_pepper() -> None:
    grey = np.full((16, 32, 32, 3), 0.5)
    out = corrupt(grey, "impulse_noise", 5, seed=0)
    changed = out != 0.5
    assert changed.mean() == pytest.approx(0.07, rel=0.05)
    assert set(np.unique(out[changed])) == {0.0, 1.0}
    assert (out[changed] == 1).mean() == pytest.approx(0.5, abs=0.03)


def test_contrast_by_hand() -> None:
    img = np.zeros((1, 2, 2, 1))
    img[0, 0, 0, 0] = 0.8  # mean 0.2
    out = corrupt(img, "contrast", 2, seed=0)  # c = 0.5: (x − 0.2)·0.5 + 0.2
    assert np.allclose(out[0, :, :, 0], [[0.5, 0.1], [0.1, 0.1]])


def test_disk_kernels() -> None:
    for radius, alias in SEVERITY_PARAMS["defocus_blur"]:
        k = disk_kernel(radius, alias)
        assert k.shape == (17, 17) and k.sum() == pytest.approx(1, abs=1e-6)
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    # radius 1: the 5-point cross; alias σ 0.2 barely spreads it
    k = disk_kernel(1, 0.2)
    assert k[8, 8] == pytest.approx(0.2, abs=1e-4) and k[7, 8] == pytest.approx(0.2, abs=1e-4)
    assert k[7, 7] < 1e-4
    # radius 0.3: the single centre pixel, blurred by the 3×3 Gaussian of σ 0.4
    taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 0.4**2))
    taps /= taps.sum()
    assert np.allclose(disk_kernel(0.3, 0.4)[7:10, 7:10], np.outer(taps, taps), atol=1e-7)


@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur"])
def test_blur_keeps_constant_images(name: str) -> None:
    flat = np.full((2, 32, 32, 3), 0.3)
    assert np.allclose(corrupt(flat, name, 5), 0.3)


def test_gaussian_blur_is_separable_spatial_gaussian() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((2, 32, 32, 3))
    ref = np.stack([np.stack([ndimage.gaussian_filter(x[i, :, :, c], 1.0, mode="nearest")
                              for c in range(3)], -1) for i in range(2)])
    assert np.allclose(corrupt(x, "gaussian_blur", 5), np.clip(ref, 0, 1))


def test_jpeg_on_greyscale_and_rgb(images: np.ndarray) -> None:
    grey = images[..., :1]
    out = corrupt(grey, "jpeg_compression", 5)
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert 0 < _mse(out, grey) < _mse(corrupt(images, "contrast", 5), images)


def test_additive_gaussian_noise(images: np.ndarray) -> None:
    floats = images.astype(np.float64) / 255
    assert np.array_equal(add_gaussian_noise(floats, 0.0), floats)
    a = add_gaussian_noise(images, 0.1, seed=5)
    assert np.array_equal(a, add_gaussian_noise(images, 0.1, seed=5)) and a.dtype == np.uint8
    mses = [_mse(add_gaussian_noise(floats, s, seed=0), floats) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(x < y for x, y in zip(mses, mses[1:]))
    out = add_gaussian_noise(floats, 0.5, seed=0)
    assert out.min() == 0 and out.max() == 1  # clipped


@pytest.mark.parametrize("call, message", [
    (lambda x: corrupt(x, "fog", 1), "unknown corruption"),
    (lambda x: corrupt(x, "contrast", 0), "severity"),
    (lambda x: corrupt(x, "contrast", 6), "severity"),
    (lambda x: corrupt(x[0], "contrast", 1), "N×H×W×C"),
    (lambda x: corrupt(x * 3.0, "contrast", 1), r"\[0, 1\]"),
    (lambda x: corrupt(x.astype(np.int32), "contrast", 1), "uint8 or float"),
    (lambda x: add_gaussian_noise(x, -0.1), "sigma"),
])
def test_bad_arguments(call, message: str) -> None:
    x = np.full((1, 4, 4, 3), 0.5)
    with pytest.raises(TGDError, match=message):
        call(x)
