"""The tiled persim-order PI sums (``_accumulate_pi``): persim's sum bit for bit at tile edges.

The kernel sums in TILE_ROWS × TILE_COLS tiles of a zero-padded PI and skips a point's tile when
its largest term is below half an ulp of every sum there; the reference here is the plain sum of
``np.outer``-style terms, point after point, in float64 (persim's operations and order).
"""

from __future__ import annotations

import numpy as np
import pytest

from tgd_core.topology import PaperPIConfig, paper_persistence_images
from tgd_core.topology._kernels import TILE_COLS, TILE_ROWS, _accumulate_pi, _untile
from tgd_core.topology.paper import _tables, _tiles
from tgd_core.topology.reference import reference_paper_pis

CONFIGS = [
    PaperPIConfig(),
    PaperPIConfig(resolution=(13, 7), spread=0.002),  # supports of one or two pixels
    PaperPIConfig(resolution=(1, 1)),
    PaperPIConfig(resolution=(TILE_COLS, TILE_ROWS), spread=0.05, max_bd=0.6, threshold=0.0),
    PaperPIConfig(resolution=(2 * TILE_COLS + 1, 3 * TILE_ROWS - 1), spread=0.004, max_bd=1.0),
]


def persim_order_sum(births, deaths, config: PaperPIConfig) -> np.ndarray:
    """The PI of points (birth level, death level), persim's terms added point after point."""
    t = _tables(config)
    pi = np.zeros((t.ty.shape[1], t.tx.shape[1]))
    inv = 1.0 / max(t.pers[b, d] for b, d in zip(births, deaths, strict=True))
    for b, d in zip(births, deaths, strict=True):
        pi += (t.tx[b][None, :] * t.ty[t.yid[b, d]][:, None]) * (inv * t.pers[b, d])
    return pi


def tiled_sum(births, deaths, config: PaperPIConfig) -> tuple[np.ndarray, np.ndarray]:
    """(float64 PI, uint8 PI) of the same points from the kernel's tiled sum."""
    t, tiles = _tables(config), _tiles(config)
    n_tiles = tiles.xmax.shape[1] * tiles.ymax.shape[1]
    acc = np.full(n_tiles * TILE_ROWS * TILE_COLS, np.nan)  # overwritten, whatever it held
    lower = np.full(n_tiles, np.nan)
    kb, kd = np.asarray(births, np.int64), np.asarray(deaths, np.int64)
    _accumulate_pi(kb, kd, len(kb), t.pers, t.yid, tiles, acc, lower)
    rows, cols = t.ty.shape[1], t.tx.shape[1]
    img, u8 = np.empty(rows * cols), np.empty((rows, cols), np.uint8)
    _untile(acc, tiles.xmax.shape[1] * TILE_COLS, True, img, u8)
    return img.reshape(rows, cols), u8


def random_points(rng, config: PaperPIConfig, n: int) -> tuple[list[int], list[int]]:
    """n kept bars (with repeats), births anywhere in [0, 255]."""
    keep = _tables(config).keep
    b, d = np.nonzero(keep)
    pick = rng.integers(0, len(b), size=n)
    pick[n // 2:] = pick[: n - n // 2]  # every point twice: equal terms added in turn
    rng.shuffle(pick)
    return b[pick].tolist(), d[pick].tolist()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.resolution}-{c.spread}")
def test_tiled_sum_is_persims_sum_bit_for_bit(config):
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 40, 400):
        births, deaths = random_points(rng, config, n)
        ours, u8 = tiled_sum(births, deaths, config)
        ref = persim_order_sum(births, deaths, config)
        differing = int((ours.view(np.uint64) != ref.view(np.uint64)).sum())
        assert differing == 0, f"{n} points: {differing} pixels differ"
        peak = ref.max()
        expected = ((ref / peak) * 255).astype(np.uint8) if peak > 0 else np.zeros_like(u8)
        np.testing.assert_array_equal(u8, expected)


def test_empty_and_constant_images_give_zero_pis():
    images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 9, 255)])
    for config in CONFIGS:
        raw, u8 = paper_persistence_images(images, config)
        assert not raw.any() and not u8.any()
        assert raw.shape == u8.shape == (3, 6, config.resolution[1], config.resolution[0])


def test_tiny_terms_after_large_sums_are_skipped_exactly():
    """A strong point first, then many points whose terms on most tiles are far below an ulp
    of the sums there (the skipped case), then a point whose tails land on empty pixels (the
    case that must not be skipped): still persim's bits."""
    config = PaperPIConfig()
    t = _tables(config)
    strong = (20, 60)  # birth 0.08, persistence 0.16: in the window
    weak = [(b, d) for b in (3, 40, 60, 200) for d in (b + 6, b + 10, b + 40) if t.keep[b, d]]
    births, deaths = zip(*([strong] + weak * 5 + [(250, 255)]), strict=True)
    ours, _ = tiled_sum(births, deaths, config)
    ref = persim_order_sum(births, deaths, config)
    assert (ours.view(np.uint64) == ref.view(np.uint64)).all()
    positive = ref[ref > 0]
    assert positive.max() / positive.min() > 1e20  # sums from Gaussian tails to the peak
    s = persim_order_sum(births[:1], deaths[:1], config)  # after the first point
    weight = (1.0 / t.pers[strong]) * t.pers[60, 70]
    term = (t.tx[60][None, :] * t.ty[t.yid[60, 70]][:, None]) * weight
    assert ((term > 0) & (s + term == s)).sum() > 100  # terms that change nothing: skippable


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: f"{c.resolution}-{c.spread}")
def test_odd_sizes_match_the_authors_pipeline(config, cifar_test_images):
    """Through the public API, against ripser + persim, at sizes that are not whole tiles (no
    empty diagram here: persim returns those as nx × ny zeros, transposed)."""
    rng = np.random.default_rng(11)
    images = np.concatenate([cifar_test_images[:2],
                             rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)])
    raw, u8 = paper_persistence_images(images, config)
    for i, image in enumerate(images):
        ref_raw, ref_u8, _ = reference_paper_pis(image, config)
        assert (raw[i].view(np.uint64) == ref_raw.view(np.uint64)).all(), f"image {i}"
        np.testing.assert_array_equal(u8[i], ref_u8)
