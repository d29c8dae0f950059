"""Data-parallel training throughput on this machine: one process against torchrun with N.

    .venv/bin/python benchmarks/bench_distributed.py [--images 2560] [--epochs 2] \
        [--nproc 1 2] [--model wrn16_1] [--write docs/benchmarks.md]

Trains the same scratch run (``--images`` CIFAR-10 training images, batch 128, channels_last,
CPU) with 1 process and with ``torchrun --nproc-per-node N`` (gloo), each process using
cores / N threads (with global-batch and with per-rank BatchNorm statistics), and reports the
training images/s of the last epoch (the first pays for start-up and compilation) as written by
the training loop to ``metrics.jsonl``. The runs compute the same global batches, so the numbers
compare like for like.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402


def images_per_second(nproc: int, args, folder: Path, sync_batchnorm: bool = True) -> float:
    threads = max(1, (os.cpu_count() or 1) // nproc)
    out = folder / f"n{nproc}-{sync_batchnorm}"
    cmd = ["train", "--model", args.model, "--train-subset", str(args.images), "--test-subset",
           "500", "--batch-size", "128", "--epochs", str(args.epochs), "--device", "cpu",
           "--channels-last", "--threads", str(threads), "--no-progress", "--out", str(out),
           "--set", f"sync_batchnorm={str(sync_batchnorm).lower()}"]
    launcher = ([sys.executable, "-m", "tgd_core"] if nproc == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={nproc}", "-m", "tgd_core"])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    subprocess.run(launcher + cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["images_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2560)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="wrn16_1")
    ap.add_argument("--write", help="update this Markdown file's section")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        rates = {(n, True): images_per_second(n, args, Path(tmp)) for n in args.nproc}
        rates.update({(n, False): images_per_second(n, args, Path(tmp), sync_batchnorm=False)
                      for n in args.nproc if n > 1})
    cores = os.cpu_count()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {cores} cores, torch "
        f"{torch.__version__}, gloo.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_distributed.py --images {args.images} "
        f"--epochs {args.epochs} --nproc {' '.join(map(str, args.nproc))} --model {args.model}`",
        "",
        f"| {args.model}, batch 128 (global), channels_last | processes × threads | "
        "images / s (last epoch) | × 1 process |",
        "|---|---|---:|---:|",
    ]
    base = rates[args.nproc[0], True]
    for (n, sync), rate in rates.items():
        label = ("1 process" if n == 1 else f"torchrun, {n} processes (gloo), BatchNorm "
                 + ("statistics of the global batch" if sync else "statistics per rank"))
        lines.append(f"| {label} | {n} × {max(1, cores // n)} | {rate:,.0f} "
                     f"| {rate / base:.2f} |")
    lines += ["", "On one CPU, data parallelism only splits the cores that intra-op threads "
              "already use, and global-batch BatchNorm adds a collective and an unfused "
              "normalisation per layer (PyTorch's SyncBatchNorm kernels exist for CUDA only); "
              "torchrun is for several GPUs or machines, where each process has its own device."]
    publish(lines, args.write, "bench_distributed", "Distributed training (torchrun)")


if __name__ == "__main__":
    main()
