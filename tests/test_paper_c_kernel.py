"""The C paper-mode kernel (tgd_core/topology/_paper_kernel.c) against the numba kernel, bit for
bit, and how it is chosen, built and refused (TGD_PAPER_KERNEL, a missing compiler).

tests/test_topology_paper.py runs every reference comparison (ripser + persim) on both kernels;
this file covers what only the C kernel has: its vertex filter (runs, rises and falls dropped
before the stack, minima carried instead of pushed), its 8-wide left-pack tails, its tile-by-tile
sums and skip bounds, its threads, its build, and the factor tables kept beside the build.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from tgd_core.core.errors import TGDError
from tgd_core.topology import PaperPIConfig, _ckernel, paper, paper_persistence_images

CONFIGS = [
    PaperPIConfig(),
    PaperPIConfig(resolution=(13, 7), spread=0.002),
    PaperPIConfig(resolution=(1, 1)),
    PaperPIConfig(resolution=(8, 4), spread=0.05, max_bd=0.6, threshold=0.0),
    PaperPIConfig(resolution=(17, 70), spread=0.004, max_bd=1.0),  # 14 row tiles: two groups
]


def pis(images, config=None, *, kernel: str, monkeypatch, threads: int | None = None):
    monkeypatch.setenv("TGD_PAPER_KERNEL", kernel)
    if threads is not None:
        monkeypatch.setattr(_ckernel, "threads", lambda: threads)
    return paper_persistence_images(images, config)


def assert_same_bits(a, b):
    (raw_a, u8_a), (raw_b, u8_b) = a, b
    differing = int((raw_a.view(np.uint64) != raw_b.view(np.uint64)).sum())
    assert differing == 0, f"{differing} PI pixels differ"
    np.testing.assert_array_equal(u8_a, u8_b)


def signals_with_every_shape(rng) -> list[np.ndarray]:
    """Images whose scans have every length from 1 to 40 (the vertex filter's 8-wide loops and
    their tails, ends, n <= 2), plateaus of every length, strict rises and falls, noise."""
    images = []
    for h, w in [(1, 1), (1, 2), (2, 1), (1, 3), (3, 3), (1, 9), (1, 10), (1, 17), (2, 20),
                 (5, 8), (4, 10), (40, 1)]:
        noise = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        coarse = (rng.integers(0, 3, size=(h, w, 3)) * 100).astype(np.uint8)  # runs, ties
        ramp = np.broadcast_to(np.arange(h * w, dtype=np.uint8).reshape(h, w, 1) * 3,
                               (h, w, 3)).copy()  # strict rises (rows) and jumps
        images += [noise, coarse, ramp, 255 - ramp]
    return images


@pytest.mark.usefixtures("c_kernel")
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.resolution}-{c.spread}")
def test_c_equals_numba_on_cifar_and_noise(config, cifar_test_images, monkeypatch):
    rng = np.random.default_rng(5)
    images = np.concatenate([cifar_test_images[:20],
                             rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8),
                             (rng.integers(0, 4, size=(3, 32, 32, 3)) * 80).astype(np.uint8)])
    assert_same_bits(pis(images, config, kernel="c", monkeypatch=monkeypatch),
                     pis(images, config, kernel="numba", monkeypatch=monkeypatch))


@pytest.mark.usefixtures("c_kernel")
def test_c_equals_numba_on_every_signal_shape(monkeypatch):
    for image in signals_with_every_shape(np.random.default_rng(9)):
        for config in CONFIGS[:2]:
            assert_same_bits(pis(image[None], config, kernel="c", monkeypatch=monkeypatch),
                             pis(image[None], config, kernel="numba", monkeypatch=monkeypatch))


SCALAR_BUILD = ("-mno-avx2", "-mno-fma")


@pytest.mark.usefixtures("c_kernel")
def test_the_build_without_avx2_gives_the_same_bits(cifar_test_images, monkeypatch):
    """The scalar paths (vertex filter, column lists, maxima, the uint8-only float32 sums
    without fused multiply-adds) that CPUs without AVX2 and FMA (and other architectures) run,
    built here with -mno-avx2 -mno-fma, against the default build."""
    if "avx2" not in _ckernel._cpu_flags():
        pytest.skip("this CPU's default build already is the one without AVX2")
    rng = np.random.default_rng(3)
    images = np.concatenate([cifar_test_images[:12],
                             rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)])
    config = PaperPIConfig()
    struct = paper._c_tables(config)
    results = []
    for lib in (_ckernel.build(), _ckernel.build(SCALAR_BUILD)):
        raw, u8 = np.empty((len(images), 6, 50, 50)), np.empty((len(images), 6, 50, 50), np.uint8)
        _ckernel.paper_pis(lib, images, struct, raw, u8, threads=2)
        u8_only = np.empty_like(u8)
        _ckernel.paper_pis(lib, images, struct, None, u8_only, threads=2)
        np.testing.assert_array_equal(u8_only, u8)
        results.append((raw, u8))
    assert_same_bits(*results)
    for image in signals_with_every_shape(np.random.default_rng(4))[::3]:
        small = [paper_persistence_images(image[None], config)]
        monkeypatch.setattr(_ckernel, "_load_library", lambda: _ckernel.build(SCALAR_BUILD))
        small.append(paper_persistence_images(image[None], config))
        monkeypatch.undo()
        assert_same_bits(*small)


@pytest.mark.usefixtures("c_kernel")
def test_threads_and_batch_sizes_do_not_change_the_bits(cifar_train_images, monkeypatch):
    """Images are handed out _ckernel.CHUNK at a time to however many threads run."""
    images = cifar_train_images[:3 * _ckernel.CHUNK + 5]
    one = pis(images, kernel="c", monkeypatch=monkeypatch, threads=1)
    for threads in (2, 3, 8):
        assert_same_bits(pis(images, kernel="c", monkeypatch=monkeypatch, threads=threads), one)
    part = pis(images[7:_ckernel.CHUNK + 9], kernel="c", monkeypatch=monkeypatch, threads=2)
    assert_same_bits(part, (one[0][7:_ckernel.CHUNK + 9], one[1][7:_ckernel.CHUNK + 9]))


#: Without raw PIs, configs whose PIs have at least U8_MIN_TILES tiles (the default, 17 x 70
#: and this one) take the certified float32 sums.
U8_CONFIGS = CONFIGS + [PaperPIConfig(resolution=(120, 90), spread=0.02, max_bd=0.5)]


def far_from_the_window(rng) -> np.ndarray:
    """Images whose bars are born far above the default window (births >= 0.45 or 0.55
    against max_bd = 0.3): PIs whose largest pixel is about 1e-46 or 1e-129 (far below
    float32's range: the certified sums scale them), and all-zero PIs (births >= 0.78: every
    term underflows; the float64 path)."""
    return np.concatenate([rng.integers(lo, lo + 16, size=(2, 32, 32, 3), dtype=np.uint8)
                           for lo in (115, 140, 200)])


@pytest.mark.usefixtures("c_kernel")
@pytest.mark.parametrize("config", U8_CONFIGS, ids=lambda c: f"{c.resolution}-{c.spread}")
def test_raw_false_gives_the_same_uint8(config, cifar_test_images, monkeypatch):
    """Without raw PIs the kernel sums in float32 with an error bound and computes persim's
    float64 sum only where the bound cannot decide a pixel's uint8 value (certified_u8 in the
    C source): the same uint8 PIs as the float64 sums."""
    monkeypatch.setenv("TGD_PAPER_KERNEL", "c")
    rng = np.random.default_rng(11)
    noisy = np.clip(cifar_test_images[:20] + rng.normal(0, 40, (20, 32, 32, 3)), 0, 255)
    images = np.concatenate([cifar_test_images[:60], noisy.astype(np.uint8),
                             rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8),
                             np.full((1, 32, 32, 3), 7, np.uint8), far_from_the_window(rng)])
    raw, u8 = paper_persistence_images(images, config)
    none, u8_only = paper_persistence_images(images, config, raw=False)
    assert none is None and raw.dtype == np.float64
    np.testing.assert_array_equal(u8_only, u8)
    if config == PaperPIConfig():
        largest = raw[-6:].reshape(6, -1).max(axis=1)
        assert 1e-140 < largest[:4].min() and largest[:4].max() < 1e-40 and not largest[4:].any()
    for image in signals_with_every_shape(np.random.default_rng(12))[::2]:
        np.testing.assert_array_equal(paper_persistence_images(image[None], config, raw=False)[1],
                                      paper_persistence_images(image[None], config)[1])


def test_kernel_choice_is_validated(monkeypatch):
    monkeypatch.setenv("TGD_PAPER_KERNEL", "fortran")
    with pytest.raises(TGDError, match="TGD_PAPER_KERNEL must be one of auto, c, numba"):
        paper_persistence_images(np.zeros((1, 4, 4, 3), np.uint8))
    monkeypatch.setenv("TGD_PAPER_KERNEL", "numba")
    assert _ckernel.load() is None


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A machine without a working C compiler and no built kernel in its cache."""
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.setenv("TGD_KERNEL_CACHE", str(tmp_path / "kernels"))
    _ckernel._load_library.cache_clear()
    yield
    _ckernel._load_library.cache_clear()


def test_without_a_compiler_auto_falls_back_to_numba(no_compiler, monkeypatch, caplog,
                                                     cifar_test_images):
    monkeypatch.setenv("TGD_PAPER_KERNEL", "auto")
    with caplog.at_level(logging.WARNING, logger=_ckernel.__name__):
        fallback = paper_persistence_images(cifar_test_images[:3])
    assert "C kernel unavailable, using numba" in caplog.text
    monkeypatch.setenv("TGD_PAPER_KERNEL", "numba")
    assert_same_bits(fallback, paper_persistence_images(cifar_test_images[:3]))


def test_without_a_compiler_c_is_refused_in_one_line(no_compiler, monkeypatch):
    monkeypatch.setenv("TGD_PAPER_KERNEL", "c")
    with pytest.raises(TGDError, match="could not be built") as info:
        paper_persistence_images(np.zeros((1, 4, 4, 3), np.uint8))
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("c_kernel")
def test_the_build_is_cached_per_source_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("TGD_KERNEL_CACHE", str(tmp_path))
    _ckernel._load_library.cache_clear()
    try:
        assert _ckernel._load_library() is not None
        built = list(tmp_path.glob("paper_kernel-*.so"))
        assert len(built) == 1 and built[0] == _ckernel._library_path()
        stamp = built[0].stat().st_mtime_ns
        _ckernel._load_library.cache_clear()
        assert _ckernel._load_library() is not None  # loaded, not rebuilt
        assert built[0].stat().st_mtime_ns == stamp
        assert list(tmp_path.iterdir()) == built  # no temporary files left
    finally:
        _ckernel._load_library.cache_clear()


@pytest.mark.usefixtures("c_kernel")
def test_paper_pis_load_neither_numba_nor_scikit_learn_nor_scipy_stats():
    """On the C kernel, paper-mode PIs (what ``tgd pi`` and the dataset cache compute) start
    without numba, scikit-learn or scipy.stats (about 2 s of imports together)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from tgd_core.topology import paper_persistence_images;"
            "raw, u8 = paper_persistence_images(np.zeros((2, 8, 8, 3), np.uint8) + 7);"
            "print(sorted(m for m in ('numba', 'sklearn', 'scipy.stats', 'torch')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "TGD_PAPER_KERNEL": "c"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_second_process_finds_the_factor_tables_on_disk_and_skips_scipy(tmp_path):
    """The Gaussian factors (SciPy's ndtr) are kept beside the kernel's builds: a process that
    finds them there computes the same PIs without importing SciPy at all."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from tgd_core.topology import paper_persistence_images;"
            "raw, u8 = paper_persistence_images(np.arange(2 * 8 * 8 * 3, dtype=np.uint8)"
            ".reshape(2, 8, 8, 3));"
            "print('scipy' in sys.modules, raw.tobytes().hex()[:4000])")
    env = {**os.environ, "TGD_KERNEL_CACHE": str(tmp_path)}
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True, env=env).stdout.split()
                     for _ in range(2))
    assert first[0] == "True" and second[0] == "False"
    assert first[1] == second[1]
    assert len(list(tmp_path.glob("paper_factors-*.npz"))) == 1


def test_factor_tables_on_disk_are_checked_and_recomputed_when_unreadable(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("TGD_KERNEL_CACHE", str(tmp_path))
    config, pers = PaperPIConfig(resolution=(13, 7)), np.array([0.25, 0.5, 1.0])
    tx, fy = paper._gaussian_factors(config, pers)
    (path,) = tmp_path.glob("paper_factors-*.npz")
    real = paper._norm_cdf
    monkeypatch.setattr(paper, "_norm_cdf", lambda *a: pytest.fail("computed, not read"))
    again = paper._gaussian_factors(config, pers)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again, (tx, fy), strict=True))
    for damage in (b"not an npz", None):
        if damage is None:  # a readable file of the wrong shape
            np.savez(path, tx=tx[:5], fy=fy)
        else:
            path.write_bytes(damage)
        monkeypatch.setattr(paper, "_norm_cdf", real)
        again = paper._gaussian_factors(config, pers)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(again, (tx, fy), strict=True))
    assert paper._gaussian_factors(config, pers[:2])[1].shape == (2, 7)  # another key


def test_thread_count_follows_numba_then_the_environment(monkeypatch):
    import sys

    import numba

    numba.set_num_threads(1)
    try:
        assert _ckernel.threads() == 1  # numba loaded: its setting applies to both kernels
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    monkeypatch.delitem(sys.modules, "numba")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert _ckernel.threads() == 3
    monkeypatch.setenv("NUMBA_NUM_THREADS", "many")
    assert _ckernel.threads() >= 1


def test_the_kernels_compact_tables_reproduce_pers_and_yid():
    """The C kernel reads persistence as levels[d] - levels[b] and the y-factor ids as uint16:
    the same values as PaperTables.pers and .yid, and a pers they cannot reproduce is refused."""
    tables = paper._tables(PaperPIConfig())
    levels, yid = _ckernel._levels_and_yid(tables)
    rebuilt = levels[None, :] - levels[:, None]
    assert np.array_equal(rebuilt.view(np.uint64), tables.pers.view(np.uint64))
    assert yid.dtype == np.uint16 and np.array_equal(yid, tables.yid)
    shifted = tables.pers.copy()
    shifted[3, 200] = np.nextafter(shifted[3, 200], 1.0)
    with pytest.raises(TGDError, match="death - birth"):
        _ckernel._levels_and_yid(tables._replace(pers=shifted))
