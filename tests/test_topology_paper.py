"""Paper-mode PIs against the authors' pipeline (ripser + persim.PersImage), and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from tgd_core.core.errors import TGDError
from tgd_core.topology import (
    PaperPersistenceImages,
    PaperPIConfig,
    normalise_pi_stack,
    paper_diagrams,
    paper_persistence_images,
    to_uint8,
)
from tgd_core.topology.reference import reference_paper_pis

pytest.importorskip("ripser")
pytest.importorskip("persim")


def assert_matches_reference(images: np.ndarray, config: PaperPIConfig | None = None):
    """Diagrams identical, float PIs within 1e-6 of each PI's max, uint8 PIs equal up to one
    level where truncation sits on a boundary; returns the worst relative difference."""
    raw, u8 = paper_persistence_images(images, config)
    worst = 0.0
    for i, image in enumerate(images):
        ref_raw, ref_u8, ref_dgms = reference_paper_pis(image, config)
        for ours, ref in zip(paper_diagrams(image, config), ref_dgms):
            key = np.lexsort
            np.testing.assert_array_equal(ours[key(ours.T[::-1])], ref[key(ref.T[::-1])])
        scale = ref_raw.reshape(6, -1).max(axis=1)
        scale = np.where(scale > 0, scale, 1.0)[:, None, None]
        rel = np.abs(raw[i] - ref_raw) / scale
        worst = max(worst, float(rel.max()))
        assert rel.max() <= 1e-6, f"image {i}: PI differs by {rel.max():.2e} of its max"
        diff = np.abs(u8[i].astype(int) - ref_u8.astype(int))
        assert diff.max() <= 1, f"image {i}: uint8 PI differs by {diff.max()} levels"
    return worst


def test_matches_authors_pipeline_on_cifar_test_images(cifar_test_images):
    worst = assert_matches_reference(cifar_test_images[:16])
    assert worst < 1e-12  # in practice ~1e-15: the same formulas, summed in another order


def test_matches_authors_pipeline_on_cifar_train_images(cifar_train_images):
    assert_matches_reference(cifar_train_images[100:108])


def test_uint8_identical_on_more_images(cifar_train_images):
    images = cifar_train_images[:12]
    _, u8 = paper_persistence_images(images)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(u8[i], reference_paper_pis(image)[1])


def test_noise_ties_and_odd_sizes_match_reference():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(2, 9, 13, 3), dtype=np.uint8)
    coarse = (rng.integers(0, 4, size=(2, 9, 13, 3)) * 60).astype(np.uint8)  # many ties
    assert_matches_reference(np.concatenate([noise, coarse]))
    assert_matches_reference(rng.integers(0, 256, size=(1, 40, 7, 3), dtype=np.uint8))


def test_other_parameters_match_reference(cifar_test_images):
    config = PaperPIConfig(resolution=(20, 30), spread=0.02, max_bd=0.5, threshold=0.05)
    assert_matches_reference(cifar_test_images[20:23], config)


def test_constant_and_all_equal_images_give_zero_pis():
    for value in (0, 77, 255):
        image = np.full((32, 32, 3), value, np.uint8)
        raw, u8 = paper_persistence_images(image)
        assert raw.shape == (1, 6, 50, 50) and not raw.any() and not u8.any()
        assert all(len(d) == 0 for d in paper_diagrams(image))


def test_single_bright_pixel():
    """A bright pixel on black splits each scan of its channel into two runs of zeros that
    merge at 1.0; a dark pixel and a grey one on white give one bar (100/255, 1) per scan, far
    outside the [0, 0.3] window, so the PI holds only Gaussian tails."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[5, 7, 0] = 255
    dgms = paper_diagrams(image)
    np.testing.assert_array_equal(dgms[0], [[0.0, 1.0]])
    np.testing.assert_array_equal(dgms[3], [[0.0, 1.0]])
    assert all(len(dgms[i]) == 0 for i in (1, 2, 4, 5))
    image = np.full((32, 32, 3), 255, np.uint8)
    image[5, 7] = 0
    image[20, 9] = 100
    dgms = paper_diagrams(image)
    for d in dgms:
        np.testing.assert_allclose(d, [[np.float32(100 / 255.0), 1.0]])
    raw, u8 = paper_persistence_images(image)
    assert 0 < raw.max() < 1e-30  # persistence 0.61: tails only
    assert u8.max() == 255  # max normalisation brings it to full contrast
    assert_matches_reference(image[None])


def test_tail_only_pis_keep_full_contrast_in_float64():
    """PIs whose max is below float32's smallest normal must be normalised in float64."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[::2] = 130  # alternating rows: persistence-0.51 bars, far outside the window
    raw, u8 = paper_persistence_images(image)
    tiny = raw.reshape(6, -1).max(axis=1)
    assert (tiny > 0).all() and (tiny[:3] < 1.2e-38).all()
    assert u8.reshape(6, -1).max(axis=1).tolist() == [255] * 6
    float32_copy = to_uint8(raw.astype(np.float32))
    assert float32_copy[0, :3].max() == 0  # what a float32 pipeline would lose
    assert_matches_reference(image[None])


def test_grey_and_rgba_inputs_are_converted():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    raw_grey, _ = paper_persistence_images(grey)
    raw_rgb, _ = paper_persistence_images(np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(raw_grey, raw_rgb)
    rgba = np.concatenate([np.repeat(grey[..., None], 3, axis=-1),
                           np.full((16, 16, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_array_equal(paper_persistence_images(rgba)[0], raw_rgb)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
        (np.zeros((2, 2, 32, 32, 3), np.uint8), "shape"),
        (np.full((8, 8, 3), np.nan), "NaN"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.full((8, 8, 3), 300, np.int32), "[0, 255]"),
        (np.zeros((2, 8, 8, 7), np.uint8), "channels"),
        (np.array(["a", "b"], dtype=object), "object"),
    ],
)
def test_bad_input_gives_clear_error(bad, message):
    with pytest.raises(TGDError, match=message.replace("[", r"\[").replace("]", r"\]")):
        paper_persistence_images(bad)


@pytest.mark.parametrize("kwargs", [dict(spread=0), dict(max_bd=-1), dict(threshold=-0.1),
                                    dict(resolution=(0, 5)), dict(min_bd=0.5, max_bd=0.3)])
def test_bad_parameters_give_clear_error(kwargs):
    with pytest.raises(TGDError):
        PaperPIConfig(**kwargs)


def test_transformer_and_teacher_input(cifar_test_images):
    images = cifar_test_images[:4]
    u8 = PaperPersistenceImages(output="uint8").fit_transform(images)
    np.testing.assert_array_equal(u8, paper_persistence_images(images)[1])
    x = normalise_pi_stack(u8)
    assert x.shape == (4, 6, 50, 50) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0, 0], (u8[0, 0, 0, 0] / 255.0 - 0.05165074) / 0.12468914,
                               rtol=1e-5)
