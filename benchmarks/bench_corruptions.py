"""CIFAR-10-C corruption speed: seconds per 10,000 images for each corruption of the engine.

    .venv/bin/python benchmarks/bench_corruptions.py [--images 1000] [--repeats 3]
        [--per-image 100] [--no-write]

Each corruption (:func:`tgd_core.data.corruptions.corrupt`, uint8 CIFAR-10 test images in and
out) is timed on a batch of ``--images`` images at every severity 1–5; the figure is the median
over ``--repeats`` runs of the mean over severities, scaled to 10,000 images. Ratios, measured in
the same run: against ``contrast`` (pure numpy arithmetic, the cheapest), and the batched call
against one call per image (on the first ``--per-image`` images, severity 3), which is what the
vectorisation over the batch buys. The last lines are the cost of corrupting 10,000 images for
a whole sweep (every corruption at every severity): the sum of the table, then the sweep as an
evaluation makes it (:func:`tgd_core.evaluation.sweep.applied`, on the same images, wall clock)
in one process and in a pool of one process per CPU. The machine's load average before the run
is reported: other work on the cores skews every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402

from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, family_of  # noqa: E402
from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.evaluation.sweep import applied, conditions  # noqa: E402

PER = 10_000  # images the figures are scaled to
REFERENCE = "contrast"


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def batched_seconds(images: np.ndarray, name: str, repeats: int) -> float:
    """Median over ``repeats`` of the mean over severities, per 10,000 images."""
    runs = [statistics.fmean(seconds(lambda s=s: corrupt(images, name, s, seed=0))
                             for s in SEVERITIES) for _ in range(repeats)]
    return statistics.median(runs) * PER / len(images)


def per_image_seconds(images: np.ndarray, name: str) -> float:
    """One :func:`corrupt` call per image at severity 3, per 10,000 images."""
    total = seconds(lambda: [corrupt(images[i:i + 1], name, 3, seed=i) for i in range(len(images))])
    return total * PER / len(images)


def sweep_seconds(images: np.ndarray, workers: int) -> float:
    """A whole sweep through :func:`applied` with ``workers`` processes, per 10,000 images."""
    sweep = conditions(CORRUPTIONS, SEVERITIES, clean=False)
    return seconds(lambda: [None for _ in applied(sweep, images, workers=workers)]) * PER / len(
        images)


def measure(args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], dict[int, float]]:
    """Per corruption (batched, per image) seconds; the sweep's seconds per worker count."""
    images, _ = load_cifar10("test", limit=args.images)
    times = {name: (batched_seconds(images, name, args.repeats),
                    per_image_seconds(images[:args.per_image], name)) for name in CORRUPTIONS}
    cores = len(os.sched_getaffinity(0))
    return times, {workers: sweep_seconds(images, workers) for workers in sorted({1, cores})}


def report(times: dict[str, tuple[float, float]], sweeps: dict[int, float],
           args: argparse.Namespace, load_before: float) -> list[str]:
    reference = times[REFERENCE][0]
    command = " ".join(["benchmarks/bench_corruptions.py", *sys.argv[1:]])
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}; load average "
        f"{load_before:.2f} before the run.", "",
        f"Command: `.venv/bin/python {command}`", "",
        f"uint8 CIFAR-10 test images in and out. Batched: {args.images} images per call, mean "
        f"over severities 1–5, median of {args.repeats} runs, scaled to 10,000 images. Per image: "
        f"one call per image on {args.per_image} images at severity 3.", "",
        "| corruption | family | batched (s / 10k images) | ÷ contrast | one call per image "
        "(s / 10k) | per image ÷ batched |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, (batched, single) in times.items():
        lines.append(f"| {name} | {family_of(name)} | {batched:.2f} | {batched / reference:.1f}× "
                     f"| {single:.2f} | {single / batched:.1f}× |")
    sweep = sum(batched for batched, _ in times.values()) * len(SEVERITIES)
    lines += ["", f"A whole sweep ({len(times)} corruptions × {len(SEVERITIES)} severities) "
              f"corrupts 10,000 images in {sweep:.0f} s (the table's sum)."]
    one, most = sweeps[1], max(sweeps)
    lines += ["", f"The sweep as an evaluation makes it (`sweep.applied`, {args.images} images, "
              f"wall clock, scaled to 10,000): {one:.0f} s in one process"
              + (f", {sweeps[most]:.0f} s in {most} ({one / sweeps[most]:.2f}× faster)."
                 if most > 1 else ".")]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="images per batched call")
    ap.add_argument("--repeats", type=int, default=3, help="batched runs per corruption")
    ap.add_argument("--per-image", type=int, default=100, help="images for one-call-per-image")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    if min(args.images, args.repeats, args.per_image) < 1:
        ap.error("--images, --repeats and --per-image must be >= 1")
    load_before = os.getloadavg()[0]
    lines = report(*measure(args), args, load_before)
    publish(lines, None if args.no_write else ROOT / "docs" / "benchmarks.md",
            "bench_corruptions", "CIFAR-10-C corruptions")


if __name__ == "__main__":
    main()
