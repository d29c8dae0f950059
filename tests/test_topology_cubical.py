"""Cubical diagrams against gudhi.CubicalComplex; persistence images against gudhi's
PersistenceImage and persim's PersistenceImager."""

from __future__ import annotations

import numpy as np
import pytest

from tgd_core.core.errors import TGDError
from tgd_core.topology.cubical import (
    CubicalConfig,
    CubicalPersistence,
    cubical_diagrams,
    cubical_persistence_images,
)
from tgd_core.topology.pimage import PersistenceImageConfig, PersistenceImager, persistence_images

gudhi = pytest.importorskip("gudhi")


def gudhi_diagram(values: np.ndarray, dim: int, construction: str) -> np.ndarray:
    kw = {"vertices" if construction == "vertex" else "top_dimensional_cells": values}
    cc = gudhi.CubicalComplex(**kw)
    cc.compute_persistence()
    return np.asarray(cc.persistence_intervals_in_dimension(dim)).reshape(-1, 2)


def sort_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def assert_matches_gudhi(images, config: CubicalConfig):
    result = cubical_diagrams(images, config)
    from tgd_core.topology.cubical import channel_images

    values = channel_images(images, config)
    sign = -1.0 if config.filtration == "superlevel" else 1.0
    for n in range(len(values)):
        for c in range(values.shape[1]):
            for k, dim in enumerate(config.homology_dimensions):
                ref = gudhi_diagram(sign * values[n, c], dim, config.construction)
                ours = sign * result[n][c][k]
                np.testing.assert_array_equal(sort_rows(ours), sort_rows(ref))


@pytest.mark.parametrize("construction", ["top", "vertex"])
@pytest.mark.parametrize("filtration", ["sublevel", "superlevel"])
def test_diagrams_equal_gudhi_on_cifar(cifar_test_images, construction, filtration):
    assert_matches_gudhi(cifar_test_images[:6], CubicalConfig(construction=construction,
                                                              filtration=filtration))


@pytest.mark.parametrize("construction", ["top", "vertex"])
def test_diagrams_equal_gudhi_on_edge_cases(construction):
    rng = np.random.default_rng(3)
    cases = [
        np.zeros((5, 5), np.uint8),  # constant
        np.pad(np.full((1, 1), 255, np.uint8), 3),  # single bright pixel
        255 - np.pad(np.full((1, 1), 255, np.uint8), 3),  # single dark pixel
        rng.integers(0, 3, size=(9, 11), dtype=np.uint8) * 100,  # many ties
        rng.integers(0, 256, size=(1, 7), dtype=np.uint8),  # one row
        rng.integers(0, 256, size=(1, 1), dtype=np.uint8),  # one pixel
        np.array([[0, 0, 0], [0, 255, 0], [0, 0, 0]], np.uint8),  # one hole
        np.array([[255, 0, 255], [0, 255, 0], [255, 0, 255]], np.uint8),  # diagonal ring
    ]
    for filtration in ("sublevel", "superlevel"):
        cfg = CubicalConfig(construction=construction, filtration=filtration, channels="grey")
        for case in cases:
            assert_matches_gudhi(case[None, ..., None], cfg)


def test_float_input_grey_channel_and_hole_example():
    ring = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], float)
    (h0, h1), = cubical_diagrams(ring[None, ..., None], CubicalConfig(channels="grey"))[0]
    np.testing.assert_array_equal(h0, [[0, np.inf]])
    np.testing.assert_array_equal(h1, [[0, 1]])
    sup, = cubical_diagrams(ring, CubicalConfig(channels="grey", filtration="superlevel"))[0]
    np.testing.assert_array_equal(sup[0], [[1, -np.inf]])  # superlevel: births above deaths


def test_integrated_pis_equal_persim_persistence_imager():
    persim = pytest.importorskip("persim")
    rng = np.random.default_rng(4)
    births = rng.uniform(0, 1, 40)
    dgm = np.stack([births, births + rng.uniform(0, 0.6, 40)], axis=1)
    cfg = PersistenceImageConfig(birth_range=(0.0, 1.0), pers_range=(0.0, 0.8),
                                 resolution=(20, 16), sigma=0.05, weight="linear")
    ours = persistence_images([dgm], cfg)[0]
    imager = persim.PersistenceImager(birth_range=(0.0, 1.0), pers_range=(0.0, 0.8),
                                      pixel_size=0.05, kernel_params={"sigma": 0.05**2})
    ref = imager.transform(dgm)  # (birth, persistence) with persistence ascending
    assert ref.shape == (20, 16)
    np.testing.assert_allclose(ours, ref.T[::-1], rtol=0, atol=1e-12 * ref.max())


def test_sampled_pis_equal_gudhi_persistence_image():
    from gudhi.representations import PersistenceImage

    rng = np.random.default_rng(5)
    births = rng.uniform(0, 1, 30)
    dgm = np.stack([births, births + rng.uniform(0, 0.5, 30)], axis=1)
    cfg = PersistenceImageConfig(birth_range=(0.0, 1.0), pers_range=(0.0, 0.5),
                                 resolution=(10, 8), sigma=0.07, weight="power", power=2.0,
                                 integrate=False)
    ours = persistence_images([dgm], cfg)[0]
    hb, hp = 1.0 / 10, 0.5 / 8
    gi = PersistenceImage(bandwidth=0.07, weight=lambda x: x[1] ** 2, resolution=[10, 8],
                          im_range=[hb / 2, 1 - hb / 2, hp / 2, 0.5 - hp / 2])
    ref = gi.fit_transform([dgm])[0].reshape(8, 10)[::-1]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * ref.max())


def test_cubical_pis_are_pis_of_cubical_diagrams(cifar_test_images):
    images = cifar_test_images[:3]
    cfg = CubicalConfig()
    pi_cfg = PersistenceImageConfig(resolution=(12, 10), sigma=0.03)
    pis = cubical_persistence_images(images, cfg, pi_cfg)
    assert pis.shape == (3, 6, 10, 12)
    dgms = [d for per_image in cubical_diagrams(images, cfg) for per_ch in per_image
            for d in per_ch]
    np.testing.assert_allclose(pis.reshape(-1, 10, 12), persistence_images(dgms, pi_cfg),
                               rtol=1e-13, atol=0)
    transformer = CubicalPersistence(output="images", pi=pi_cfg)
    np.testing.assert_array_equal(transformer.fit_transform(images), pis)


def test_empty_and_bad_diagrams():
    out = PersistenceImager(resolution=(4, 4)).fit_transform([np.zeros((0, 2)),
                                                             np.array([[0.1, np.inf]])])
    assert out.shape == (2, 4, 4) and not out.any()
    with pytest.raises(TGDError, match="NaN"):
        persistence_images([np.array([[0.1, np.nan]])])
    with pytest.raises(TGDError, match="sigma"):
        PersistenceImageConfig(sigma=0)
    with pytest.raises(TGDError, match="homology_dimensions"):
        CubicalConfig(homology_dimensions=(2,))


def test_transformers_follow_the_sklearn_protocol():
    from sklearn.base import clone

    from tgd_core.topology import PaperPersistenceImages

    for est in (CubicalPersistence(channels="grey"), PersistenceImager(sigma=0.1),
                PaperPersistenceImages(threshold=0.05)):
        copy = clone(est)
        assert copy.get_params() == est.get_params()
    assert PersistenceImager().set_params(sigma=0.3).config.sigma == 0.3


OFFSET = {"birth_range": (-0.5, 1.0), "pers_range": (0.25, 1.0)}  # lows ≠ 0 and ≠ each other


@pytest.mark.parametrize("weight, power, persim_weight", [
    ("constant", 1.0, {"weight": "linear_ramp",
                       "weight_params": {"low": 1.0, "high": 1.0, "start": 0.0, "end": 1.0}}),
    ("linear", 3.0, {"weight": "persistence", "weight_params": {"n": 1.0}}),  # power unused
    ("power", 1.5, {"weight": "persistence", "weight_params": {"n": 1.5}}),
])
def test_integrated_pis_equal_persim_for_each_weight_on_offset_ranges(weight, power,
                                                                      persim_weight):
    persim = pytest.importorskip("persim")
    rng = np.random.default_rng(6)
    births = rng.uniform(-0.5, 1.0, 30)
    dgm = np.stack([births, births + rng.uniform(0.25, 1.0, 30)], axis=1)
    cfg = PersistenceImageConfig(**OFFSET, resolution=(24, 12), sigma=0.06, weight=weight,
                                 power=power)
    ours = persistence_images([dgm], cfg)[0]
    imager = persim.PersistenceImager(**OFFSET, pixel_size=0.0625,
                                      kernel_params={"sigma": 0.06**2}, **persim_weight)
    ref = imager.transform(dgm)
    assert ref.shape == (24, 12)
    np.testing.assert_allclose(ours, ref.T[::-1], rtol=0, atol=1e-12 * ref.max())


@pytest.mark.parametrize("weight, power, gudhi_weight", [
    ("constant", 1.0, lambda x: 1.0),
    ("power", 1.5, lambda x: x[1] ** 1.5),
])
def test_sampled_pis_equal_gudhi_on_offset_ranges(weight, power, gudhi_weight):
    from gudhi.representations import PersistenceImage

    rng = np.random.default_rng(7)
    births = rng.uniform(-0.5, 1.0, 25)
    dgm = np.stack([births, births + rng.uniform(0.25, 1.0, 25)], axis=1)
    cfg = PersistenceImageConfig(**OFFSET, resolution=(12, 6), sigma=0.1, weight=weight,
                                 power=power, integrate=False)
    ours = persistence_images([dgm], cfg)[0]
    hb, hp = 1.5 / 12, 0.75 / 6  # pixel centres: half a pixel inside each range
    gi = PersistenceImage(bandwidth=0.1, weight=gudhi_weight, resolution=[12, 6],
                          im_range=[-0.5 + hb / 2, 1.0 - hb / 2, 0.25 + hp / 2, 1.0 - hp / 2])
    ref = gi.fit_transform([dgm])[0].reshape(6, 12)[::-1]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * ref.max())


def test_sampled_cubical_pis_are_the_sampled_pis_of_their_diagrams(cifar_test_images):
    # the sampled, constant-weight route through cubical_persistence_images must be the one
    # persistence_images takes (itself checked against gudhi above), superlevel included
    images = cifar_test_images[:2]
    pi_cfg = PersistenceImageConfig(resolution=(9, 7), sigma=0.05, weight="constant",
                                    integrate=False)
    for cfg in (CubicalConfig(), CubicalConfig(filtration="superlevel", channels="grey")):
        pis = cubical_persistence_images(images, cfg, pi_cfg)
        dgms = [d for per_image in cubical_diagrams(images, cfg) for per_ch in per_image
                for d in per_ch]
        np.testing.assert_allclose(pis.reshape(-1, 7, 9), persistence_images(dgms, pi_cfg),
                                   rtol=1e-13, atol=0)


def test_scale_divides_uint8_pixels_before_the_filtration():
    image = np.array([[10, 10, 10, 10], [10, 200, 50, 10], [10, 10, 10, 10]], np.uint8)
    for scale in (100.0, 255.0):
        (h0, h1), = cubical_diagrams(image[None, ..., None],
                                     CubicalConfig(channels="grey", scale=scale))[0]
        values = image.astype(np.float64) / scale
        np.testing.assert_array_equal(sort_rows(h0), sort_rows(gudhi_diagram(values, 0, "top")))
        np.testing.assert_array_equal(sort_rows(h1), sort_rows(gudhi_diagram(values, 1, "top")))
        assert h1.max() == 200 / scale  # the ring's maximum, in the scaled values


def test_points_with_any_infinite_or_nan_coordinate():
    # infinite bars (either end) are dropped, as persim and gudhi's DiagramSelector drop them
    out = persistence_images([np.array([[-np.inf, 0.3]]), np.array([[0.9, -np.inf]]),
                              np.array([[np.inf, 0.2], [0.1, 0.4]])],
                             PersistenceImageConfig(resolution=(5, 5), sigma=0.1))
    assert not out[0].any() and not out[1].any()
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(
        out[2], persistence_images([np.array([[0.1, 0.4]])],
                                   PersistenceImageConfig(resolution=(5, 5), sigma=0.1))[0])
    with pytest.raises(TGDError, match="NaN"):
        persistence_images([np.array([[np.nan, 0.3]])])


def test_a_diagram_must_be_pairs_of_birth_and_death():
    """(k, 2) arrays, or one (birth, death) pair given flat; anything else is refused in one
    line — a (2, 3) array was read as three points, a (3, 3) one raised a bare ValueError."""
    config = PersistenceImageConfig(resolution=(5, 5), sigma=0.1)
    one = persistence_images([np.array([0.1, 0.4])], config)
    np.testing.assert_array_equal(one, persistence_images([np.array([[0.1, 0.4]])], config))
    for bad in (np.array([[0.1, 0.5, 0.2], [0.3, 0.6, 0.9]]), np.zeros((3, 3)), np.zeros(3)):
        with pytest.raises(TGDError, match=r"diagram 0: expected \(k, 2\)"):
            persistence_images([bad], config)
