"""Topology engine benchmark: our PIs against the reference pipelines, in one run.

    .venv/bin/python benchmarks/bench_topology.py [--images 20000] [--reference-images 30]
        [--profile-images 1000] [--repeats 3] [--full-cache] [--write docs/benchmarks.md]

- Paper mode, through the public API ``paper_persistence_images`` (uint8 PIs only, as the
  dataset cache computes them; and float64 + uint8 PIs), on each engine (:data:`VARIANTS`:
  the C kernel and the numba one, ``TGD_PAPER_KERNEL``; summation ``persim``: bit for bit,
  ``grouped``: by birth level) vs the authors' pipeline (ripser + persim.PersImage, one image
  at a time), whose float64 PIs the persim summation must equal bit for bit on every
  reference image (checked here too, and the grouped one's error).
- Where the time goes: each stage of each kernel timed on one thread (CPU time per image; the
  C kernel's stages through builds that stop after each, ``-DSTAGES=k``), the threads'
  speed-up, and the per-call overhead of the public API.
- ``--before REV``: the paper-mode engine of git revision REV (its ``_kernels.py`` and
  ``paper.py``, loaded from git into a temporary module) timed in the same run against the
  default engine now, their calls taking turns, before/after.
- Cubical mode (H0 + H1, 3 channels, 32×32 integrated PIs): ours vs gudhi.CubicalComplex +
  persim.PersistenceImager.
- ``--full-cache``: time to fill the PI cache of all 60,000 CIFAR-10 images from scratch
  (paper mode, the cache's summation ``tgd_core.topology.cache.paper_summation()``), twice:
  the first fill's 900 MB result lands in memory this process has not touched yet (on a VM
  whose host backs such pages lazily that costs seconds), the second in pages the first freed.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402

from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.topology import (  # noqa: E402
    PaperPIConfig,
    _ckernel,
    _kernels,
    paper_persistence_images,
)
from tgd_core.topology.cache import paper_summation  # noqa: E402
from tgd_core.topology.cubical import CubicalConfig, cubical_persistence_images  # noqa: E402
from tgd_core.topology.paper import _c_tables, _tables, _tiles  # noqa: E402
from tgd_core.topology.pimage import PersistenceImageConfig  # noqa: E402
from tgd_core.topology.reference import reference_paper_pis  # noqa: E402


def best_of(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    """The shortest of ``repeats`` runs of ``fn``, in seconds of ``clock``."""
    return best_of_each((fn,), repeats, clock)[0]


def best_of_each(fns, repeats: int = 3, clock=time.perf_counter) -> list[float]:
    """The shortest of ``repeats`` runs of each of ``fns``, their runs taking turns (so that a
    machine that speeds up or slows down during the benchmark favours none of them)."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seen in zip(fns, times, strict=True):
            t0 = clock()
            fn()
            seen.append(clock() - t0)
    return [min(seen) for seen in times]


#: The kernel's stages: (persim summation, grouped summation).
STAGES = (("read the six scans", "read the six scans"),
          ("H0 bars in ripser's order", "H0 bars (any order)"),
          (f"PI sums (persim's terms, in {_ckernel.TILE_ROWS}×{_ckernel.TILE_COLS} tiles)",
           "PI sums grouped by birth level"),
          ("max + uint8 quantisation", "max + uint8 quantisation"))


def _stage_loop():
    """A one-thread loop over the paper-mode kernel's stages, up to ``upto``, with either
    summation (compiled once)."""
    import numba

    @numba.njit(cache=False)
    def loop(images, tables, tiles, upto, grouped):
        pers, tx, cols, yid, ty, rows = (tables.pers, tables.tx, tables.cols, tables.yid,
                                         tables.ty, tables.rows)
        padded_cols = tiles.xmax.shape[1] * _kernels.TILE_COLS
        length = images.shape[1] * images.shape[2]
        n_rows, n_cols = ty.shape[1], tx.shape[1]
        n_ct = tiles.xmax.shape[1]
        levels = np.empty(length, np.int32)
        scratch, bucket, kb, kd = _kernels.bar_scratch(length)
        img = np.empty(0)
        acc = np.zeros((256, n_rows))
        acc_t = np.empty(tiles.ymax.shape[1] * _kernels.TILE_ROWS * padded_cols)
        lower = np.empty(n_ct * tiles.ymax.shape[1])
        lo, hi = np.full(256, n_rows, np.int64), np.zeros(256, np.int64)
        used = np.empty(256, np.int64)
        out = np.empty((n_rows, n_cols), np.uint8)
        points = 0
        for n in range(images.shape[0]):
            for s in range(6):
                _kernels._load_scan(images[n], s, levels)
                if upto >= 1 and grouped:
                    k = _kernels.h0_path_bars(levels, length, tables.min_death, scratch[0],
                                              scratch[1], scratch[2], kb, kd, scratch[3])
                    points += k
                elif upto >= 1:
                    k = _kernels._kept_bars_in_order(levels, length, tables.min_death, scratch,
                                                     bucket, kb, kd)
                    points += k
                if upto >= 2:
                    acc_t[:] = 0.0
                if upto >= 2 and k > 0 and grouped:
                    _kernels._accumulate_grouped(kb, kd, k, pers, cols, yid, ty, rows,
                                                 tiles.txp, acc, lo, hi, used, acc_t)
                elif upto >= 2 and k > 0:
                    _kernels._accumulate_pi(kb, kd, k, pers, yid, tiles, acc_t, lower)
                if upto >= 3:
                    _kernels._untile(acc_t, padded_cols, False, img, out)
        return points

    return loop


def profile_paper(images: np.ndarray, repeats: int
                  ) -> tuple[list[tuple[str, str, float, float]], float]:
    """(persim stage, grouped stage, µs of one thread's CPU time per image with each) for each
    stage of the kernel, measured as the difference between running up to it and up to the
    stage before; and the mean number of PI points per image."""
    loop = _stage_loop()
    tables, tiles = _tables(PaperPIConfig()), _tiles(PaperPIConfig())
    per_stage = {}
    for grouped in (False, True):
        loop(images[:2], tables, tiles, 3, grouped)  # compile
        cumulative = []
        for upto in range(len(STAGES)):
            times = []
            for _ in range(repeats):
                t0 = time.process_time()
                points = loop(images, tables, tiles, upto, grouped)
                times.append(time.process_time() - t0)
            cumulative.append(min(times) / len(images) * 1e6)
        per_stage[grouped] = [cumulative[0]] + [
            max(b - a, 0.0) for a, b in zip(cumulative, cumulative[1:], strict=False)]
    rows = [(names[0], names[1], a, b)
            for names, a, b in zip(STAGES, per_stage[False], per_stage[True], strict=True)]
    return rows, points / len(images)


#: The C kernel's stages (its builds with -DSTAGES=1..4 stop after each).
C_STAGES = ("read the scans, drop the vertices that cannot change the bars, H0 bars",
            "ripser's order", "PI sums (uint8 only: float32 tiles with an error bound)",
            "max + uint8 (persim's float64 sum where the bound cannot decide)")


def profile_c(images: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """(stage, µs of one thread's CPU time per image) for each stage of the C kernel: the
    difference between builds that stop after it and after the stage before."""
    struct = _c_tables(PaperPIConfig())
    images = np.ascontiguousarray(images)
    out = np.empty((len(images), 6, 50, 50), np.uint8)
    cumulative = []
    for stage in range(1, len(C_STAGES) + 1):
        lib = _ckernel.build((f"-DSTAGES={stage}",))
        seconds = best_of(lambda lib=lib: _ckernel.paper_pis(lib, images, struct, None, out, 1),
                          repeats, time.process_time)
        cumulative.append(seconds / len(images) * 1e6)
    steps = zip(cumulative, cumulative[1:], strict=False)
    per_stage = [cumulative[0]] + [max(b - a, 0.0) for a, b in steps]
    return list(zip(C_STAGES, per_stage, strict=True))


def engine_at(rev: str):
    """The paper-mode module (``paper.py`` with its own ``_kernels.py``, and its own C kernel,
    ``_ckernel.py`` and ``_paper_kernel.c``, where the revision has one) of git revision
    ``rev``, imported under private names from a temporary directory."""
    import importlib.util
    import subprocess

    def source(name: str) -> str | None:
        done = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tgd_core/topology/{name}"],
                              capture_output=True, text=True)
        if done.returncode != 0 and name == "paper.py":
            raise SystemExit(f"--before {rev}: {done.stderr.strip()}")
        return done.stdout if done.returncode == 0 else None

    tmp = Path(tempfile.mkdtemp(prefix="tgd-before-"))
    c_source = source("_paper_kernel.c")
    if c_source is not None:  # _ckernel.SOURCE is the file beside the module
        (tmp / "_paper_kernel.c").write_text(c_source)
    modules = {}
    for name in ("_kernels", "_ckernel", "paper"):
        text = source(f"{name}.py")
        if text is None:
            continue
        text = text.replace("from tgd_core.topology import _kernels, schema",
                            "from tgd_core.topology import schema\n"
                            "import _before__kernels as _kernels")
        text = text.replace("from tgd_core.topology import _ckernel, ",
                            "import _before__ckernel as _ckernel\n"
                            "from tgd_core.topology import ")
        path = tmp / f"_before_{name}.py"
        path.write_text(text.replace("cache=True", "cache=False"))
        spec = importlib.util.spec_from_file_location(f"_before_{name}", path)
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[f"_before_{name}"] = modules[name]
        spec.loader.exec_module(modules[name])
    if "_ckernel" in modules:
        modules["_ckernel"].SOURCE = tmp / "_paper_kernel.c"
    return modules["paper"]


def time_full_cache(fills: int) -> list[float]:
    """Seconds of each of ``fills`` fills of the paper-mode PI cache of all 60,000 CIFAR-10
    images into a new directory (the first into memory this process has not touched, the
    others into pages the one before freed)."""
    from tgd_core.topology.cache import cached_pis

    splits = [load_cifar10(split)[0] for split in ("train", "test")]
    with tempfile.TemporaryDirectory() as tmp:  # kernel build and imports
        cached_pis(splits[1][:64], PaperPIConfig(), "cifar10", "warm-up", cache_dir=tmp)
    seconds = []
    for _ in range(fills):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for split, x in zip(("train", "test"), splits, strict=True):
                cached_pis(x, PaperPIConfig(), "cifar10", split, cache_dir=tmp)
            seconds.append(time.perf_counter() - t0)
    return seconds


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


#: The paper-mode engines timed: (name, TGD_PAPER_KERNEL, summation).
VARIANTS = (("C kernel, summation='persim'", "c", "persim"),
            ("numba kernel, summation='persim'", "numba", "persim"),
            ("numba kernel, summation='grouped'", "numba", "grouped"))


def engine(kernel: str, summation: str):
    """``paper_persistence_images`` on one kernel (``TGD_PAPER_KERNEL``, set for the call
    only) and summation."""
    def run(images, raw, out=None):
        saved = os.environ.get("TGD_PAPER_KERNEL")
        os.environ["TGD_PAPER_KERNEL"] = kernel
        try:
            return paper_persistence_images(images, raw=raw, summation=summation, out=out)
        finally:
            if saved is None:
                del os.environ["TGD_PAPER_KERNEL"]
            else:
                os.environ["TGD_PAPER_KERNEL"] = saved
    return run


def time_paper(images: np.ndarray, run, profile_images: int, repeats: int,
               threads: int) -> tuple[float, float, float, float, float]:
    """One engine (:func:`engine`): (s for uint8 PIs, s for float64 + uint8 PIs, one thread's
    CPU µs per image for uint8 PIs, s for one call on one image, s for float64 + uint8 PIs
    into reused ``out=`` buffers, as a caller computing batch after batch passes them)."""
    import numba

    run(images[:64], False)  # compile
    t_u8 = best_of(lambda: run(images, False), repeats)
    t_raw = best_of(lambda: run(images, True), repeats)
    buffers = run(images, True)  # a caller's buffers, used once before
    t_raw_out = best_of(lambda: run(images, True, buffers), repeats)
    numba.set_num_threads(1)
    part = images[:profile_images]
    t_one = best_of(lambda: run(part, False), repeats, time.process_time)
    t_call = best_of(lambda: run(images[:1], False), 50)
    numba.set_num_threads(threads)
    return t_u8, t_raw, t_one / len(part) * 1e6, t_call, t_raw_out


def check_against_reference(ref_images, engines) -> tuple[float, dict, dict, dict]:
    """The reference's rate (images/s) and, per engine, on how many reference images its
    float64 PIs equal persim's bit for bit, on how many its uint8 PIs equal, and its largest
    error relative to each PI's maximum."""
    ours = {name: run(ref_images, True) for name, run in engines.items()}
    identical, same_u8 = dict.fromkeys(engines, 0), dict.fromkeys(engines, 0)
    error = dict.fromkeys(engines, 0.0)
    t0 = time.perf_counter()
    for i, image in enumerate(ref_images):
        ref_raw, ref_u8, _ = reference_paper_pis(image)
        peak = ref_raw.reshape(6, -1).max(axis=1)[:, None, None]
        for name, (raw, u8) in ours.items():
            identical[name] += bool((raw[i].view(np.uint64) == ref_raw.view(np.uint64)).all())
            same_u8[name] += bool((u8[i] == ref_u8).all())
            error[name] = max(error[name], float(
                (np.abs(raw[i] - ref_raw) / np.where(peak > 0, peak, 1.0)).max()))
    return len(ref_images) / (time.perf_counter() - t0), identical, same_u8, error


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000, help="images for our timings")
    ap.add_argument("--reference-images", type=int, default=30, help="images for the references")
    ap.add_argument("--profile-images", type=int, default=1000,
                    help="images for the per-stage profile (one thread)")
    ap.add_argument("--repeats", type=int, default=3, help="our timings: best of this many runs")
    ap.add_argument("--before", metavar="REV", help="also time the paper-mode engine of this "
                    "git revision (before/after in one run)")
    ap.add_argument("--full-cache", action="store_true", help="also time caching all 60k images")
    ap.add_argument("--cache-fills", type=int, metavar="N", help="only time N fills of the "
                    "60k-image cache (the first into fresh memory) and print them")
    ap.add_argument("--write", help="update this Markdown file's benchmark section")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.cache_fills:
        seconds = time_full_cache(args.cache_fills)
        print("60,000 PIs cached, s per fill:", ", ".join(f"{s:.2f}" for s in seconds))
        return
    import numba

    train, _ = load_cifar10("train")
    images, ref_images = train[: args.images], train[: args.reference_images]
    threads = numba.get_num_threads()
    paper = measure_paper(images, ref_images, args.profile_images, args.repeats, threads)
    before = (time_before(args.before, images, args.profile_images, args.repeats, threads)
              if args.before else [])
    cubical = measure_cubical(images, ref_images, args.repeats)
    full = time_full_cache(2) if args.full_cache else []
    lines = (table_lines(args, threads, paper.rows + cubical)
             + paper_lines(paper, args.profile_images, len(images), threads)
             + before_lines(before, args.before, paper.cache_engine, len(images), args.repeats)
             + full_cache_lines(full))
    publish(lines, args.write, "bench_topology", "Topology engine")


@dataclass
class PaperMeasurements:
    """Paper mode's measurements: the table rows, each engine's :func:`time_paper` timings,
    the agreement with the reference (:func:`check_against_reference`), the stage profiles
    (:func:`profile_paper`, :func:`profile_c`) and the engine the PI cache uses."""

    rows: list[tuple[str, str, int, float, float]]
    timed: dict[str, tuple[float, float, float, float, float]]
    identical: dict[str, int]
    same_u8: dict[str, int]
    error: dict[str, float]
    stages: list[tuple[str, str, float, float]]
    points: float
    c_stages: list[tuple[str, float]]
    cache_engine: str


def measure_paper(images: np.ndarray, ref_images: np.ndarray, profile_images: int,
                  repeats: int, threads: int) -> PaperMeasurements:
    """Paper mode through the public API on every engine, against the reference, and where
    the time goes."""
    engines = {name: engine(kernel, summation) for name, kernel, summation in VARIANTS}
    timed = {name: time_paper(images, run, profile_images, repeats, threads)
             for name, run in engines.items()}
    ref_rate, identical, same_u8, error = check_against_reference(ref_images, engines)
    cache_engine = next(name for name, kernel, summation in VARIANTS
                        if summation == paper_summation()
                        and (kernel == "c") == (_ckernel.load() is not None))
    rows = []
    for name, (s_u8, s_raw, _, _, s_raw_out) in timed.items():
        u8_name = "uint8 PIs" + (" (cache path)" if name == cache_engine else "")
        for output, t in ((u8_name, s_u8), ("float64 + uint8 PIs", s_raw),
                          ("float64 + uint8 PIs into reused `out=` buffers", s_raw_out)):
            rate = len(images) / t
            rows.append(("paper", f"ours, {name}, {output}", len(images), rate, rate / ref_rate))
    rows.append(("paper", "reference: ripser + persim.PersImage", len(ref_images), ref_rate, 1.0))
    stages, points = profile_paper(images[:profile_images], repeats)
    c_stages = profile_c(images[:profile_images], repeats)
    return PaperMeasurements(rows, timed, identical, same_u8, error, stages, points, c_stages,
                             cache_engine)


def time_before(rev: str, images: np.ndarray, profile_images: int, repeats: int,
                threads: int) -> list[tuple[str, float, float]]:
    """(output, value before, value now): revision ``rev``'s paper-mode engine and the
    default one now, their calls taking turns; images/s, and one thread's CPU µs per image."""
    import numba

    old, now = engine_at(rev), paper_persistence_images
    old.paper_persistence_images(images[:64])  # compile
    before = []
    for raw in (False, True):
        t_old, t_now = best_of_each(
            [lambda engine=engine, raw=raw: engine(images, raw=raw)
             for engine in (old.paper_persistence_images, now)], repeats)
        before.append(("float64 + uint8 PIs" if raw else "uint8 PIs", len(images) / t_old,
                       len(images) / t_now))
    numba.set_num_threads(1)
    part = images[:profile_images]
    t_old, t_now = best_of_each(
        [lambda engine=engine: engine(part, raw=False)
         for engine in (old.paper_persistence_images, now)], repeats, time.process_time)
    numba.set_num_threads(threads)
    before.append(("uint8 PIs, one thread, CPU µs / image", t_old / len(part) * 1e6,
                   t_now / len(part) * 1e6))
    return before


def measure_cubical(images: np.ndarray, ref_images: np.ndarray, repeats: int
                    ) -> list[tuple[str, str, int, float, float]]:
    """Cubical mode's table rows: ours (up to 10,000 images) against gudhi + persim."""
    cub, pi = CubicalConfig(), PersistenceImageConfig(resolution=(32, 32), sigma=0.02)
    cubical_persistence_images(images[:64], cub, pi)  # compile
    n_cub = min(len(images), 10000)
    t_cub = best_of(lambda: cubical_persistence_images(images[:n_cub], cub, pi), repeats)
    t0 = time.perf_counter()
    reference_cubical(ref_images, pi)
    cref_rate = len(ref_images) / (time.perf_counter() - t0)
    return [("cubical", "ours, H0+H1, 3 channels, 32×32 PIs", n_cub, n_cub / t_cub,
             n_cub / t_cub / cref_rate),
            ("cubical", "reference: gudhi CubicalComplex + persim PersistenceImager",
             len(ref_images), cref_rate, 1.0)]


def table_lines(args: argparse.Namespace, threads: int,
                rows: list[tuple[str, str, int, float, float]]) -> list[str]:
    """The report's head: the machine, the command and the images/s table."""
    import numba

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"{threads} numba threads, Python {platform.python_version()}, numba {numba.__version__}.",
        "",
        "Command: `.venv/bin/python benchmarks/bench_topology.py "
        f"--images {args.images} --reference-images {args.reference_images} "
        f"--profile-images {args.profile_images} --repeats {args.repeats}"
        + (f" --before {args.before}" if args.before else "")
        + (" --full-cache" if args.full_cache else "") + "`",
        "",
        "| mode | pipeline | images | images/s | × reference |",
        "|---|---|---:|---:|---:|",
    ]
    return lines + [f"| {mode} | {name} | {n:,} | {rate:,.1f} | {ratio:,.0f}× |"
                    for mode, name, n, rate, ratio in rows]


def paper_lines(paper: PaperMeasurements, profile_images: int, n_images: int,
                threads: int) -> list[str]:
    """Paper mode's agreement with persim, where its time goes, and how the kernels work."""
    c_name, numba_name, grouped_name = (name for name, _, _ in VARIANTS)
    n_ref = paper.rows[-1][2]  # the reference row's images
    return [
        "",
        "Paper-mode PIs equal persim's bit for bit (float64) on "
        + ", ".join(f"{paper.identical[name]} of {n_ref} reference images with the {name} "
                    f"(uint8: {paper.same_u8[name]} of {n_ref})"
                    for name in (c_name, numba_name))
        + f"; with the {grouped_name} (the same sum grouped by birth level), the float64 PIs "
        f"are within {paper.error[grouped_name]:.1e} of each PI's maximum of persim's and the "
        f"uint8 PIs equal on {paper.same_u8[grouped_name]} of {n_ref}.",
        *c_profile_lines(paper, min(profile_images, n_images), c_name),
        *numba_profile_lines(paper, numba_name, grouped_name),
        *notes_lines(paper, n_images, threads, c_name),
    ]


def c_profile_lines(paper: PaperMeasurements, profiled: int, c_name: str) -> list[str]:
    """The C kernel's stages: one thread's CPU time per image and share."""
    c_total = sum(us for _, us in paper.c_stages)
    return [
        "",
        f"Where the paper-mode time goes (one thread, CPU time per image, {profiled:,} images, "
        f"{paper.points:.0f} PI points per image; each stage timed as the difference to the "
        "stages before it). The C kernel (the default where a C compiler is found):",
        "",
        "| stage (C kernel, persim summation) | µs / image | share |",
        "|---|---:|---:|",
        *(f"| {name} | {us:,.1f} | {us / c_total:.0%} |" for name, us in paper.c_stages),
        f"| kernel, all stages | {c_total:,.1f} | 100% |",
        f"| public API (uint8 PIs), one thread | {paper.timed[c_name][2]:,.1f} | |",
    ]


def numba_profile_lines(paper: PaperMeasurements, numba_name: str,
                        grouped_name: str) -> list[str]:
    """The numba kernel's stages with either summation, side by side."""
    total = sum(a for _, _, a, _ in paper.stages)
    total_grouped = sum(b for _, _, _, b in paper.stages)
    return [
        "",
        "The numba kernel (the fallback), with either summation:",
        "",
        "| stage (persim summation) | µs / image | share | stage (grouped summation) "
        "| µs / image | share |",
        "|---|---:|---:|---|---:|---:|",
        *(f"| {name} | {us:,.1f} | {us / total:.0%} | {name_grouped} "
          f"| {us_grouped:,.1f} | {us_grouped / total_grouped:.0%} |"
          for name, name_grouped, us, us_grouped in paper.stages),
        f"| kernel, all stages | {total:,.1f} | 100% | kernel, all stages "
        f"| {total_grouped:,.1f} | 100% |",
        f"| public API (uint8 PIs), one thread | {paper.timed[numba_name][2]:,.1f} | | public "
        f"API (uint8 PIs), one thread | {paper.timed[grouped_name][2]:,.1f} | |",
    ]


def notes_lines(paper: PaperMeasurements, n_images: int, threads: int, c_name: str
                ) -> list[str]:
    """The threads' speed-up, the cost of new pages, and how the kernels compute."""
    t_u8, t_raw, one_thread_us, t_call, t_raw_out = paper.timed[c_name]
    return [
        "",
        f"C kernel, {threads} threads: {n_images / t_u8 * one_thread_us * 1e-6:.2f}× one "
        f"thread's speed (uint8 PIs; wall time against one thread's CPU time, so contention "
        f"from other processes shows here). One call on one image: {t_call * 1e3:.2f} ms.",
        "",
        f"The float64 rows write {n_images * 6 * 50 * 50 * 9 / 1e9:.1f} GB per call into "
        "new arrays, whose pages a helper thread faults in ahead of the kernel's threads "
        "(`tgd_core/core/memory.py`); where the memory is new to the machine too (a VM's host "
        "backs it at first touch) that costs what the machine makes it cost, so the "
        "`out=` row, into buffers a caller reuses from batch to batch, is the kernel's own "
        f"rate. In this run the C kernel's best call into new arrays took "
        f"{t_raw:.2f} s and into reused buffers {t_raw_out:.2f} s: "
        f"{t_raw - t_raw_out:.2f} s for the new pages.",
        "",
        "The C kernel first drops the vertices of each scan that cannot change its bars (the "
        "repeats in a run of equal values, the inside of strict rises and falls: 8 at a time "
        "with AVX2) and runs the stack on the rest, then sums the PI tile by tile "
        f"({_ckernel.TILE_ROWS}×{_ckernel.TILE_COLS} pixels held in registers while the tile's "
        "points visit it, persim's operations in persim's order per pixel), each tile's points "
        f"chosen first for {_ckernel.ROW_GROUP} row tiles at once in vector "
        "lanes: a point skips a tile where its largest term is below half an ulp of every sum "
        "there (it would change nothing). With only uint8 PIs asked for (the cache path and "
        "the stage profile), it sums in float32 instead (eight pixels a lane, fused "
        "multiply-adds) with a proven bound on the difference to persim's float64 sums, and "
        "computes persim's sum only for the pixels whose uint8 value the bound cannot decide "
        "(the maximum and a few more per PI): the same uint8 PIs. The numba kernel sums point "
        "by point over the same "
        "tiles; `summation='grouped'` skips ripser's ordering and adds one outer product per "
        "birth level.",
    ]


def before_lines(before: list[tuple[str, float, float]], rev: str | None, cache_engine: str,
                 n_images: int, repeats: int) -> list[str]:
    """The before/after table of ``--before REV`` (none without it)."""
    if not before:
        return []
    lines = ["", f"Before/after: the paper-mode engine of `{rev}` against this one "
                 f"({cache_engine}), in the same run, their calls taking turns (best of "
                 f"{repeats} each):", "",
             f"| paper mode, {n_images:,} images | {rev} | now | speed now / before |",
             "|---|---:|---:|---:|"]
    for name, old_value, now_value in before:
        ratio = now_value / old_value if "µs" not in name else old_value / now_value
        lines.append(f"| {name} | {old_value:,.1f} | {now_value:,.1f} | {ratio:.2f}× |")
    return lines


def full_cache_lines(full: list[float]) -> list[str]:
    """The ``--full-cache`` paragraph (none without it): the second fill and the first."""
    if not full:
        return []
    return ["", f"Filling the paper-mode PI cache for all 60,000 CIFAR-10 images "
                f"(train + test, from scratch, including hashing the images and writing "
                f"the parts; summation={paper_summation()!r}): **{full[1]:.1f} s**; "
                f"{full[0]:.1f} s the first time, when the 900 MB result lands in memory "
                f"this process has not touched before (how much that costs depends on the "
                f"machine: on this VM a first 900 MB fill of fresh memory has taken 3.5 s, "
                f"later ones 0.1 s)."]


if __name__ == "__main__":
    main()
