"""Topology engine benchmark: our PIs against the reference pipelines, in one run.

    .venv/bin/python benchmarks/bench_topology.py [--images 20000] [--reference-images 30]
        [--full-cache] [--write docs/benchmarks.md]

- Paper mode: ours (uint8 PIs, as the dataset cache computes them; and with the float64 PIs)
  vs the authors' pipeline (ripser + persim.PersImage, one image at a time).
- Cubical mode (H0 + H1, 3 channels, 32×32 integrated PIs): ours vs gudhi.CubicalComplex +
  persim.PersistenceImager.
- ``--full-cache``: time to fill the PI cache of all 60,000 CIFAR-10 images from scratch.

Images are CIFAR-10 training images from the data directory. Each of our timings is the best of
three runs after a warm-up (JIT compilation excluded); reference timings are one pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402

from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.topology import paper_persistence_images  # noqa: E402
from tgd_core.topology.cubical import CubicalConfig, cubical_persistence_images  # noqa: E402
from tgd_core.topology.pimage import PersistenceImageConfig  # noqa: E402
from tgd_core.topology.reference import reference_paper_pis  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def reference_cubical(images: np.ndarray, pi: PersistenceImageConfig) -> None:
    import gudhi
    from persim import PersistenceImager

    (b0, b1), (p0, p1) = pi.birth_range, pi.pers_range
    imager = PersistenceImager(birth_range=(b0, b1), pers_range=(p0, p1),
                               pixel_size=(b1 - b0) / pi.resolution[0],
                               kernel_params={"sigma": pi.sigma**2})
    for image in images:
        for c in range(3):
            cc = gudhi.CubicalComplex(top_dimensional_cells=image[:, :, c] / 255.0)
            cc.compute_persistence()
            for dim in (0, 1):
                dgm = np.asarray(cc.persistence_intervals_in_dimension(dim)).reshape(-1, 2)
                dgm = dgm[np.isfinite(dgm[:, 1])]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    imager.transform(dgm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000, help="images for our timings")
    ap.add_argument("--reference-images", type=int, default=30, help="images for the references")
    ap.add_argument("--full-cache", action="store_true", help="also time caching all 60k images")
    ap.add_argument("--write", help="update this Markdown file's benchmark section")
    args = ap.parse_args()

    import numba

    train, _ = load_cifar10("train")
    images = train[: args.images]
    ref_images = train[: args.reference_images]
    threads = numba.get_num_threads()
    rows = []

    # paper mode
    paper_persistence_images(images[:64])  # compile
    t_u8 = best_of(lambda: paper_persistence_images(images, raw=False))
    t_raw = best_of(lambda: paper_persistence_images(images, raw=True))
    t0 = time.perf_counter()
    for image in ref_images:
        reference_paper_pis(image)
    t_ref = time.perf_counter() - t0
    ref_rate = len(ref_images) / t_ref
    for name, t in (("ours, uint8 PIs (cache path)", t_u8), ("ours, float64 + uint8 PIs", t_raw)):
        rate = len(images) / t
        rows.append(("paper", name, len(images), rate, rate / ref_rate))
    rows.append(("paper", "reference: ripser + persim.PersImage", len(ref_images), ref_rate, 1.0))

    # cubical mode
    cub, pi = CubicalConfig(), PersistenceImageConfig(resolution=(32, 32), sigma=0.02)
    cubical_persistence_images(images[:64], cub, pi)  # compile
    n_cub = min(len(images), 10000)
    t_cub = best_of(lambda: cubical_persistence_images(images[:n_cub], cub, pi))
    t0 = time.perf_counter()
    reference_cubical(ref_images, pi)
    t_cref = time.perf_counter() - t0
    cref_rate = len(ref_images) / t_cref
    rows.append(("cubical", "ours, H0+H1, 3 channels, 32×32 PIs", n_cub, n_cub / t_cub,
                 n_cub / t_cub / cref_rate))
    rows.append(("cubical", "reference: gudhi CubicalComplex + persim PersistenceImager",
                 len(ref_images), cref_rate, 1.0))

    full = None
    if args.full_cache:
        from tgd_core.topology import PaperPIConfig
        from tgd_core.topology.cache import PICache

        test, _ = load_cifar10("test")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for split, x in (("train", train), ("test", test)):
                entry = PICache.for_images(x, PaperPIConfig(), "cifar10", split, tmp)
                entry.fill(x, PaperPIConfig())
                entry.load()
            full = time.perf_counter() - t0

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"{threads} numba threads, Python {platform.python_version()}, numba {numba.__version__}.",
        "",
        "Command: `.venv/bin/python benchmarks/bench_topology.py "
        f"--images {args.images} --reference-images {args.reference_images}"
        + (" --full-cache" if args.full_cache else "") + "`",
        "",
        "| mode | pipeline | images | images/s | × reference |",
        "|---|---|---:|---:|---:|",
    ]
    for mode, name, n, rate, ratio in rows:
        lines.append(f"| {mode} | {name} | {n:,} | {rate:,.1f} | {ratio:,.0f}× |")
    if full is not None:
        lines += ["", f"Filling the paper-mode PI cache for all 60,000 CIFAR-10 images "
                      f"(train + test, from scratch, including loading and writing): "
                      f"**{full:.1f} s**."]
    publish(lines, args.write, "bench_topology", "Topology engine")

if __name__ == "__main__":
    main()
