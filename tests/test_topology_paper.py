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
from tgd_core.topology._kernels import PAPER_CHUNK
from tgd_core.topology.reference import reference_paper_pis

pytest.importorskip("ripser")
pytest.importorskip("persim")


@pytest.fixture(autouse=True, params=["c", "numba"])
def paper_kernel(request, monkeypatch):
    """Every test here runs on both paper-mode kernels (TGD_PAPER_KERNEL): the C one (the
    default where a compiler is found) and the numba one (the fallback)."""
    if request.param == "c":
        request.getfixturevalue("c_kernel")
    monkeypatch.setenv("TGD_PAPER_KERNEL", request.param)
    return request.param


def assert_matches_reference(images: np.ndarray, config: PaperPIConfig | None = None):
    """Diagrams identical and in ripser's order, float64 PIs identical to persim's bit for bit
    (so the uint8 PIs are identical too), for ``raw=True`` and ``raw=False``."""
    raw, u8 = paper_persistence_images(images, config)
    none, u8_only = paper_persistence_images(images, config, raw=False)
    assert none is None
    np.testing.assert_array_equal(u8_only, u8)
    for i, image in enumerate(images):
        ref_raw, ref_u8, ref_dgms = reference_paper_pis(image, config)
        for ours, ref in zip(paper_diagrams(image, config), ref_dgms, strict=True):
            np.testing.assert_array_equal(ours, ref)  # same points, same order
        assert raw[i].dtype == ref_raw.dtype == np.float64
        differing = int((raw[i].view(np.uint64) != ref_raw.view(np.uint64)).sum())
        assert differing == 0, f"image {i}: {differing} PI pixels differ from persim's bits"
        np.testing.assert_array_equal(u8[i], ref_u8)


def test_matches_authors_pipeline_on_cifar_test_images(cifar_test_images):
    assert_matches_reference(cifar_test_images[:16])


def test_matches_authors_pipeline_on_cifar_train_images(cifar_train_images):
    assert_matches_reference(cifar_train_images[100:108])


def test_uint8_identical_on_more_images(cifar_train_images):
    images = cifar_train_images[:12]
    _, u8 = paper_persistence_images(images, raw=False)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(u8[i], reference_paper_pis(image)[1])


def test_batches_and_chunks_do_not_change_the_bits(cifar_train_images):
    """Images are split into parallel tasks of PAPER_CHUNK: any batch size gives the same PIs."""
    images = cifar_train_images[:2 * PAPER_CHUNK + 3]
    raw, u8 = paper_persistence_images(images)
    for start, stop in ((0, 1), (5, PAPER_CHUNK + 9), (PAPER_CHUNK - 1, len(images))):
        part_raw, part_u8 = paper_persistence_images(images[start:stop])
        np.testing.assert_array_equal(part_raw.view(np.uint64), raw[start:stop].view(np.uint64))
        np.testing.assert_array_equal(part_u8, u8[start:stop])


def ripser_h0_by_edges(levels: np.ndarray) -> list[tuple[int, int]]:
    """ripser's H0 loop, spelled out: edges (i, i+1) of value max(levels[i], levels[i+1]) by
    increasing value, ties by decreasing index; each joins two components and the younger
    (larger minimum) dies, giving (its minimum, edge value) when that is positive-length."""
    parent = list(range(len(levels)))
    low = [int(v) for v in levels]

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    value = np.maximum(levels[:-1], levels[1:]).astype(int)
    bars = []
    for i in sorted(range(len(levels) - 1), key=lambda i: (value[i], -i)):
        a, b = root(i), root(i + 1)
        old, young = (a, b) if low[a] <= low[b] else (b, a)
        if low[young] < value[i]:
            bars.append((low[young], int(value[i])))
        parent[young] = old
    return bars


@pytest.mark.parametrize("levels", [2, 4, 256])
def test_path_bars_follow_ripsers_edge_loop(levels):
    """The one-pass stack and the ordering give exactly ripser's bars in ripser's order, on
    random signals with few levels (many ties) or many, of lengths 1 to 300."""
    from tgd_core.topology._kernels import _kept_bars_in_order, bar_scratch

    rng = np.random.default_rng(levels)
    min_death = np.zeros(256, np.int32)  # keep every bar
    for n in [1, 2, 3, *rng.integers(4, 300, size=40)]:
        signal = rng.integers(0, levels, size=n).astype(np.uint8)
        scratch, bucket, b, d = bar_scratch(n)
        k = _kept_bars_in_order(signal, n, min_death, scratch, bucket, b, d)
        assert list(zip(b[:k].tolist(), d[:k].tolist(), strict=True)) == ripser_h0_by_edges(signal)


def test_diagrams_in_ripser_order_on_plateaus():
    """Long runs of equal values: many bars share a death, and ripser emits them by decreasing
    edge index; the order decides the PI's last bits."""
    rng = np.random.default_rng(3)
    runs = np.repeat(rng.integers(0, 5, size=(1, 64, 3)) * 50, 4, axis=1).astype(np.uint8)
    image = np.broadcast_to(runs, (16, 256, 3)).copy()
    image[::3] = 255 - image[::3]
    assert max(len(d) for d in paper_diagrams(image, thresholded=False)) > 20
    assert_matches_reference(image[None])


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


# ---------------------------------------------------------------------------------------------
# summation="grouped": the same PIs summed by birth level, equal up to rounding
# ---------------------------------------------------------------------------------------------

#: grouped float64 PIs differ from persim's by at most this fraction of each PI's maximum
GROUPED_RTOL = 1e-13


def assert_grouped_close(images: np.ndarray, config: PaperPIConfig | None = None):
    """Grouped float64 PIs within GROUPED_RTOL × each PI's max of the bitwise (persim) path
    (terms near float64's underflow may round to zero in one order and not the other), and the
    grouped uint8 PIs the same with raw=False."""
    exact, _ = paper_persistence_images(images, config)
    grouped, grouped_u8 = paper_persistence_images(images, config, summation="grouped")
    none, u8_only = paper_persistence_images(images, config, raw=False, summation="grouped")
    assert none is None
    np.testing.assert_array_equal(u8_only, grouped_u8)
    peak = exact.reshape(*exact.shape[:2], -1).max(axis=-1)[..., None, None]
    error = np.abs(grouped - exact) / np.where(peak > 0, peak, 1.0)
    assert error.max() <= GROUPED_RTOL, f"relative error {error.max():.3g}"
    return grouped_u8


def test_grouped_close_to_persim_on_cifar_and_noise(cifar_test_images, cifar_train_images):
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    coarse = (rng.integers(0, 4, size=(4, 32, 32, 3)) * 60).astype(np.uint8)
    for images in (cifar_test_images[:64], cifar_train_images[:64], noise, coarse):
        assert_grouped_close(images)
    assert_grouped_close(cifar_test_images[20:28],
                         PaperPIConfig(resolution=(20, 30), spread=0.02, max_bd=0.5,
                                       threshold=0.05))


def test_grouped_close_to_the_authors_pipeline(cifar_test_images):
    """Against ripser + persim themselves, not only the bitwise path."""
    images = cifar_test_images[100:104]
    grouped, u8 = paper_persistence_images(images, summation="grouped")
    for i, image in enumerate(images):
        ref_raw, ref_u8, _ = reference_paper_pis(image)
        peak = ref_raw.reshape(6, -1).max(axis=1)[:, None, None]
        assert (np.abs(grouped[i] - ref_raw) <= GROUPED_RTOL * peak).all()
        np.testing.assert_array_equal(u8[i], ref_u8)


def test_grouped_uint8_identical_on_hundreds_of_cifar_images(cifar_test_images,
                                                              cifar_train_images):
    images = np.concatenate([cifar_test_images[:300], cifar_train_images[:300]])
    _, exact = paper_persistence_images(images, raw=False)
    _, grouped = paper_persistence_images(images, raw=False, summation="grouped")
    assert int((grouped != exact).sum()) == 0


def test_grouped_tail_only_and_empty_pis():
    """PIs of Gaussian tails only (max below 1e-30) keep full contrast; empty PIs stay zero."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[::2] = 130
    u8 = assert_grouped_close(np.stack([image, np.full((32, 32, 3), 77, np.uint8)]))
    assert u8[0].reshape(6, -1).max(axis=1).tolist() == [255] * 6 and not u8[1].any()


def test_grouped_batches_and_chunks_agree(cifar_train_images):
    images = cifar_train_images[:2 * PAPER_CHUNK + 3]
    raw, _ = paper_persistence_images(images, summation="grouped")
    part, _ = paper_persistence_images(images[PAPER_CHUNK - 1:], summation="grouped")
    np.testing.assert_array_equal(part, raw[PAPER_CHUNK - 1:])


def test_summation_defaults_to_persim_and_is_validated(cifar_test_images):
    import inspect

    default = inspect.signature(paper_persistence_images).parameters["summation"].default
    assert default == "persim"
    raw, _ = paper_persistence_images(cifar_test_images[:3])
    exact, _ = paper_persistence_images(cifar_test_images[:3], summation="persim")
    np.testing.assert_array_equal(raw.view(np.uint64), exact.view(np.uint64))
    with pytest.raises(TGDError, match="summation must be 'persim' or 'grouped', got 'fast'"):
        paper_persistence_images(cifar_test_images[:1], summation="fast")


def test_out_buffers_are_filled_returned_and_validated(cifar_test_images):
    images = cifar_test_images[:5]
    raw, u8 = paper_persistence_images(images)
    buffers = (np.full(raw.shape, np.nan), np.full(u8.shape, 7, np.uint8))
    got_raw, got_u8 = paper_persistence_images(images, out=buffers)
    assert got_raw is buffers[0] and got_u8 is buffers[1]
    np.testing.assert_array_equal(got_raw.view(np.uint64), raw.view(np.uint64))
    np.testing.assert_array_equal(got_u8, u8)
    none, only_u8 = paper_persistence_images(images, raw=False, out=(None, np.empty_like(u8)))
    assert none is None
    np.testing.assert_array_equal(only_u8, u8)
    bad = [((raw[:4], u8), "shape"), ((raw.astype(np.float32), u8), "float64"),
           ((raw, u8[:, :, :, ::2]), "shape"), ((raw[..., ::-1], u8), "C-contiguous"),
           (raw, "pair")]
    for out, message in bad:
        with pytest.raises(TGDError, match=message):
            paper_persistence_images(images, out=out)
    with pytest.raises(TGDError, match="pi_raw must be None"):
        paper_persistence_images(images, raw=False, out=(raw, u8))


@pytest.mark.parametrize("threshold", [1.0, 5.0])
def test_a_threshold_no_bar_passes_gives_empty_images(threshold):
    """Persistence on [0, 1] pixel levels is at most 1: from threshold 1 no bar is kept and
    every PI is zero (the schema allows any threshold ≥ 0; the tables of an empty diagram
    once failed to build)."""
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    raw, u8 = paper_persistence_images(images, PaperPIConfig(threshold=threshold))
    assert raw.shape == (2, 6, 50, 50) and not raw.any() and not u8.any()


def _threshold_image() -> np.ndarray:
    """Row scans with bars of persistence 3/255 (below any useful threshold) and 51/255."""
    image = np.full((4, 8, 3), 60, np.uint8)
    image[0, ::2] = (0, 57, 9)  # births 0 / 57 / 9, deaths 60: persistence 60, 3, 51 levels
    return image


def test_a_bar_exactly_at_the_threshold_is_dropped_as_by_the_reference():
    # the reference keeps death - birth > threshold (strictly): a bar of persistence exactly
    # the threshold (the float32 levels' difference, as ripser's diagram holds it) is dropped
    image = _threshold_image()
    threshold = float(np.float32(60 / 255)) - float(np.float32(9 / 255))  # exact in float64
    config = PaperPIConfig(threshold=threshold, max_bd=0.5)
    assert_matches_reference(image[None], config)
    assert len(paper_diagrams(image, config)[2]) == 0  # channel B's bars: all at the threshold


def test_unthresholded_diagrams_hold_every_finite_ripser_bar():
    from tgd_core.topology.paper import scan_signals
    from tgd_core.topology.reference import reference_h0_diagram

    image = _threshold_image()
    dgms = paper_diagrams(image, thresholded=False)
    for ours, signal in zip(dgms, scan_signals(image[None])[0], strict=True):
        ref = reference_h0_diagram(signal / 255.0)
        np.testing.assert_array_equal(ours, ref[np.isfinite(ref[:, 1])])
    assert len(dgms[1]) > 0 and len(paper_diagrams(image)[1]) == 0  # G: 3-level bars only
    with pytest.raises(TGDError, match="paper_diagrams takes one image, got 2"):
        paper_diagrams(np.stack([image, image]))


def test_a_positive_min_bd_still_starts_the_window_at_zero():
    # persim.PersImage takes min(minBD, 0) as the birth window's low end
    image = _threshold_image()
    image[0, ::2, 1] = 20  # G's bars too pass the default threshold: no empty diagram
    assert_matches_reference(image[None], PaperPIConfig(min_bd=0.1, max_bd=0.5,
                                                        resolution=(6, 9)))


def test_uint8_and_teacher_input_of_one_stack():
    rng = np.random.default_rng(8)
    raw = rng.uniform(0, 2, size=(2, 6, 5, 4))
    raw[1, 3] = 0.0  # an empty PI stays zero
    expected = np.zeros(raw.shape, np.uint8)
    for n in range(2):
        for s in range(6):
            if raw[n, s].max() > 0:
                expected[n, s] = (raw[n, s] / raw[n, s].max() * 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(raw), expected)
    np.testing.assert_array_equal(to_uint8(raw[1]), expected[1])  # one S×rows×cols stack
    mean, std = np.arange(1, 7) / 10, np.arange(2, 8) / 10
    x = normalise_pi_stack(expected, mean, std)
    ref = (expected.astype(np.float32) / np.float32(255) - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(normalise_pi_stack(expected[1], mean, std), ref[1], atol=1e-6)
    assert normalise_pi_stack(np.full((6, 1, 1), 255, np.uint8), 0.0, 1.0).min() == 1.0
