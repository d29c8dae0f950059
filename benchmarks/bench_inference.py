"""Inference latency: the distilled student against the test-time pipeline a PI teacher needs.

    .venv/bin/python benchmarks/bench_inference.py [--repeats 300] [--threads N] [--no-write]

- Student: ``checkpoints/student_tgd.pt`` (WRN16-1 on raw 32×32 images) in PyTorch eager
  (:func:`tgd_core.evaluation.metrics.predict_logits`, as ``tgd evaluate`` runs it), and exported by
  :mod:`tgd_core.nets.export` into a temporary folder and run by its
  :class:`~tgd_core.nets.export.ExportedClassifier` on onnxruntime and on TorchScript.
- PI teacher: paper-mode PIs of the image (:mod:`tgd_core.topology.paper`) + a WRN16-3 on the
  6×50×50 PI stack, PyTorch eager (``predict_logits`` with the ``pi_input`` transform). No
  WRN16-3 PI checkpoint is shipped, so it is built from the model registry with random weights:
  the timing does not depend on them. For context, the authors' PI pipeline (ripser +
  persim, :mod:`tgd_core.topology.reference`) on a few images.

Every timing starts from uint8 CIFAR-10 test images and ends with logits (conversion,
normalisation and PIs included). Batch 1: per-image latency, median and 90th percentile over
``--repeats`` images (in blocks that take turns between the pipelines, each block after a
warm-up); batch 256: throughput, median of ``--batch-repeats`` runs. onnxruntime gets as many
intra-op threads as torch (``--threads``, default torch's). The machine's load average before
the run is reported: other work on the cores skews every figure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402

from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.data.normalization import CIFAR10_PI  # noqa: E402
from tgd_core.evaluation.metrics import pi_input, predict_logits  # noqa: E402
from tgd_core.nets.checkpoints import load_checkpoint  # noqa: E402
from tgd_core.nets.export import ExportedClassifier, export_checkpoint  # noqa: E402
from tgd_core.nets.models import build_model  # noqa: E402
from tgd_core.topology.reference import reference_paper_pis  # noqa: E402

STUDENT = ROOT / "checkpoints" / "student_tgd.pt"
ACCEPTANCE = 20.0  # issue #8: student on onnxruntime ≥ 20× faster per image than the PI teacher

Predict = Callable[[np.ndarray], object]


def latency_ms(pipelines: dict[str, Predict], images: np.ndarray, repeats: int,
               rounds: int = 3, warmup: int = 10) -> dict[str, tuple[float, float]]:
    """(median, 90th percentile) milliseconds of each pipeline on one image.

    Each pipeline runs in blocks of consecutive images (after ``warmup`` calls: a thread pool
    that just ran another pipeline may still be spinning), and the blocks of all pipelines take
    turns over ``rounds`` rounds, so a burst of other load on the machine hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    per_round = -(-repeats // rounds)
    for r in range(rounds):
        for name, predict in pipelines.items():
            for i in range(warmup):
                predict(images[i % len(images)][None])
            for i in range(r * per_round, min(repeats, (r + 1) * per_round)):
                x = images[i % len(images)][None]
                t0 = time.perf_counter()
                predict(x)
                times[name].append(time.perf_counter() - t0)
    return {name: (1e3 * float(np.median(t)), 1e3 * float(np.percentile(t, 90)))
            for name, t in times.items()}


def throughput(predict: Predict, batch: np.ndarray, repeats: int) -> float:
    """Images per second of ``predict`` on the whole batch (median of ``repeats`` runs after a
    warm-up run)."""
    predict(batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - t0)
    return len(batch) / float(np.median(times))


TEACHER = "PI teacher: paper PIs + WRN16-3 on 6×50×50, PyTorch eager"
ONNX = "student WRN16-1, onnxruntime"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=300, help="batch-1 timings per pipeline")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the throughput runs")
    ap.add_argument("--batch-repeats", type=int, default=5, help="throughput runs per pipeline")
    ap.add_argument("--reference-images", type=int, default=5,
                    help="images for the authors' PI pipeline (about 0.3 s each)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and onnxruntime intra-op threads (default: torch's default)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    return ap.parse_args()


def build_pipelines(export_dir: Path, threads: int) -> dict[str, Predict]:
    """The shipped student (eager, onnxruntime, TorchScript exported into ``export_dir``) and the
    paper-mode PI teacher (PIs + a random-weight WRN16-3), each from uint8 images to logits."""
    student = load_checkpoint(STUDENT)
    student_net = student.build()
    teacher_net = build_model("wrn16_3", in_channels=CIFAR10_PI.channels).eval()
    pis = pi_input()  # paper mode, the representation the shipped PI teacher was trained on
    pipelines: dict[str, Predict] = {
        "student WRN16-1, PyTorch eager":
            lambda x: predict_logits(student_net, x, student.normalization),
    }
    for fmt, name in (("onnx", "onnxruntime"), ("torchscript", "TorchScript")):
        path = export_checkpoint(STUDENT, export_dir / f"student.{fmt}", fmt,
                                 num_threads=threads).path
        pipelines[f"student WRN16-1, {name}"] = ExportedClassifier(
            path, num_threads=threads).predict
    pipelines[TEACHER] = lambda x: predict_logits(teacher_net, x, CIFAR10_PI, transform=pis)
    pipelines["of which: paper-mode PIs alone"] = pis
    return pipelines


def reference_pi_ms(images: np.ndarray) -> float:
    """Median milliseconds of the authors' PI pipeline (ripser + persim) per image."""
    times = []
    for image in images:
        t0 = time.perf_counter()
        reference_paper_pis(image)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def report_lines(args: argparse.Namespace, threads: int, load_before: float,
                 results: dict[str, tuple[float, float, float]], ref_ms: float) -> list[str]:
    """The markdown section: set-up, command, the table of ``results`` (median ms, p90 ms,
    images/s per pipeline) with PI-teacher ratios, and the verdict on issue #8's target."""
    t_median, _, t_rate = results[TEACHER]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"{threads} intra-op threads (torch and onnxruntime), Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {importlib.metadata.version('onnxruntime')}; "
        f"load average {load_before:.2f} before the run.",
        "",
        "Command: `.venv/bin/python benchmarks/bench_inference.py --repeats "
        f"{args.repeats}" + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
        f"From uint8 CIFAR-10 test images to logits. Batch 1: per image, median and p90 of "
        f"{args.repeats} images; batch {args.batch}: median of {args.batch_repeats} runs. The "
        "WRN16-3 PI teacher has random weights (no such checkpoint is shipped; the time does not "
        "depend on them). Ratios: PI-teacher pipeline time ÷ this pipeline's time, per image.",
        "",
        f"| pipeline | batch 1 median (ms) | batch 1 p90 (ms) | batch {args.batch} (images/s) "
        f"| PI teacher ÷ this, batch 1 | PI teacher ÷ this, batch {args.batch} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (median, p90, rate) in results.items():
        ratios = ("", "") if name.startswith("of which") else (
            f"{t_median / median:,.1f}×", f"{rate / t_rate:,.1f}×")
        lines.append(f"| {name} | {median:.3f} | {p90:.3f} | {rate:,.0f} | {ratios[0]} "
                     f"| {ratios[1]} |")
    lines.append(f"| for context: the authors' PIs alone (ripser + persim, "
                 f"{args.reference_images} images) | {ref_ms:.1f} | | | | |")
    ort_ratio = t_median / results[ONNX][0]
    verdict = "meets" if ort_ratio >= ACCEPTANCE else "does NOT meet"
    return lines + ["", f"The student on onnxruntime answers one image {ort_ratio:,.1f}× faster "
                        f"than the PI-teacher pipeline ({verdict} the ≥ {ACCEPTANCE:g}× target of "
                        "issue #8)."]


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]

    images, _ = load_cifar10("test", limit=max(args.batch, args.repeats,
                                               args.reference_images))
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = build_pipelines(Path(tmp), threads)
        latency = latency_ms(pipelines, images, args.repeats)
        rates = {name: throughput(predict, images[: args.batch], args.batch_repeats)
                 for name, predict in pipelines.items()}
    results = {name: (*latency[name], rates[name]) for name in pipelines}
    ref_ms = reference_pi_ms(images[: args.reference_images])
    publish(report_lines(args, threads, load_before, results, ref_ms),
            None if args.no_write else ROOT / "docs" / "benchmarks.md", "bench_inference",
            "Inference latency: student vs PI teacher")

if __name__ == "__main__":
    main()
