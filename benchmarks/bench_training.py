"""Training and distillation speed on this machine, in one run.

    .venv/bin/python benchmarks/bench_training.py [--steps 6] [--batch 128] [--write docs/benchmarks.md]

1. Training throughput (images/s, SGD step with backward) for WRN16-1 and WRN16-3 on raw
   32×32 images and WRN16-3 on 6×50×50 PI stacks, with and without channels_last.
2. Distillation step time of TGD against a scratch WRN16-1 step: teachers (WRN16-3 raw, WRN16-3
   PI) run live under no_grad, or their targets come from the cache (no augmentation, fixed
   batches: logits per sample, similarity maps per batch) — the ratio issue #4 bounds by 2.5.
3. A TGD step with live teachers whose PI input is read from the PI cache, computed on the fly
   in the step, or computed for the next batch in a background thread as the training loop
   does with augmentation (issue #9); timed in interleaved rounds.

Random inputs (speed does not depend on the pixels); best of three timings of ``--steps``
steps after a warm-up step. The scratch step is timed again right before the TGD steps, in the
memory format that was fastest for it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import publish  # noqa: E402

from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW  # noqa: E402
from tgd_core.distill import get_method  # noqa: E402
from tgd_core.nets.models import build_model  # noqa: E402
from tgd_core.nets.network import Network  # noqa: E402
from tgd_core.topology.representation import compute_pis  # noqa: E402
from tgd_core.training.data import ON_THE_FLY_CHUNK, prefetch  # noqa: E402
from tgd_core.training.targets import TargetCache  # noqa: E402


def step_seconds(distiller, inputs, labels, steps: int, cache=None, make_inputs=None,
                 repeats: int = 3) -> float:
    """Best of ``repeats`` timings of ``steps`` SGD steps (one warm-up step first);
    ``make_inputs`` rebuilds the inputs inside each step (e.g. PIs computed on the fly)."""
    opt = torch.optim.SGD(list(distiller.trainable_parameters()), lr=0.01, momentum=0.9)
    distiller.train()
    idx = torch.arange(len(labels))

    def one():
        x = make_inputs() if make_inputs else inputs
        targets = cache.targets(distiller, x, idx, 0) if cache else None
        _, terms = distiller.forward_train(x, labels, targets)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()

    one()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            one()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def to_channels_last(inputs):
    return {k: v.contiguous(memory_format=torch.channels_last) for k, v in inputs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--write", help="update this Markdown file's section")
    args = ap.parse_args()
    torch.manual_seed(0)
    b = args.batch
    raw = {"raw": torch.rand(b, 3, 32, 32), "pi": torch.rand(b, 6, 50, 50)}
    labels = torch.randint(0, 10, (b,))
    scratch = get_method("scratch")

    rows = []
    for model, kind, channels in (("wrn16_1", "raw", 3), ("wrn16_3", "raw", 3),
                                  ("wrn16_3", "pi", 6)):
        for cl in (False, True):
            net = build_model(model, in_channels=channels)
            norm = CIFAR10_RAW if kind == "raw" else CIFAR10_PI
            d = scratch(Network(net, kind, norm))
            inputs = raw
            if cl:
                d = d.to(memory_format=torch.channels_last)
                inputs = to_channels_last(raw)
            t = step_seconds(d, inputs, labels, args.steps)
            rows.append((f"{model} on {kind}" + (" (6×50×50)" if kind == "pi" else " (3×32×32)"),
                         "channels_last" if cl else "contiguous", t, b / t))

    def tgd(cl: bool):
        torch.manual_seed(0)
        student = Network(build_model("wrn16_1"), "raw", CIFAR10_RAW)
        teachers = {"t1": Network(build_model("wrn16_3"), "raw", CIFAR10_RAW),
                    "t2": Network(build_model("wrn16_3", in_channels=6), "pi", CIFAR10_PI)}
        d = get_method("tgd")(student, teachers)
        return d.to(memory_format=torch.channels_last) if cl else d

    best_cl = min((r for r in rows if r[0].startswith("wrn16_1")), key=lambda r: r[2])
    cl = best_cl[1] == "channels_last"
    inputs = to_channels_last(raw) if cl else raw
    torch.manual_seed(0)
    d = scratch(Network(build_model("wrn16_1"), "raw", CIFAR10_RAW))
    d = d.to(memory_format=torch.channels_last) if cl else d
    t_scratch = step_seconds(d, inputs, labels, args.steps)  # again, beside the TGD timings
    d = tgd(cl)
    t_live = step_seconds(d, inputs, labels, max(2, args.steps // 2))
    d = tgd(cl)
    cache = TargetCache.create(d, b, inputs, augment=False, fixed_batches=True)
    t_cached = step_seconds(d, inputs, labels, args.steps, cache=cache)

    # The PI input of each step: read from the PI cache (uint8 rows → float), computed on the
    # fly from the batch's uint8 views in each step, or computed for ON_THE_FLY_CHUNK steps in
    # one call (the training loop on a CPU), or for the next batch in a background thread (the
    # training loop on an accelerator). Timed in interleaved rounds (best of each), so drift
    # on a shared machine hits them alike.
    views = (raw["raw"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    cached_pis = torch.from_numpy(compute_pis(views, raw=False)[1])  # also compiles
    raw_u8 = torch.from_numpy(views).permute(0, 3, 1, 2).contiguous()

    def batch(pi_u8: torch.Tensor):
        x = {"raw": raw_u8.float().div_(255.0), "pi": pi_u8.float().div_(255.0)}
        return to_channels_last(x) if cl else x

    def stream(chunk: int):
        many = np.concatenate([views] * chunk)
        while True:
            for pis in torch.from_numpy(compute_pis(many, raw=False)[1]).split(b):
                yield batch(pis)

    t_pi = min(_timed(lambda: compute_pis(views, raw=False)) for _ in range(5))
    chunked, ahead = stream(ON_THE_FLY_CHUNK), prefetch(stream(1))
    sources = {"cache": lambda: batch(cached_pis),
               "fly": lambda: batch(torch.from_numpy(compute_pis(views, raw=False)[1])),
               "chunk": lambda: next(chunked),
               "ahead": lambda: next(ahead)}
    d = tgd(cl)
    t_src = dict.fromkeys(sources, float("inf"))
    for _ in range(3):
        for name, make in sources.items():
            t_src[name] = min(t_src[name], step_seconds(d, inputs, labels, max(2, args.steps // 2),
                                                        make_inputs=make, repeats=1))
    ahead.close()
    t_read, t_fly, t_chunk, t_ahead = (t_src[k] for k in ("cache", "fly", "chunk", "ahead"))

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), batch {b}, "
        f"Python {platform.python_version()}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_training.py --steps {args.steps} "
        f"--batch {b}`",
        "",
        "| network | memory format | s / step | images / s |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {n} | {m} | {t:.3f} | {r:,.0f} |" for n, m, t, r in rows]
    lines += [
        "",
        "| distillation step (WRN16-1 student) | s / step | × scratch |",
        "|---|---:|---:|",
        f"| scratch (CE only) | {t_scratch:.3f} | 1.00 |",
        f"| TGD, teachers live (no_grad) | {t_live:.3f} | {t_live / t_scratch:.2f} |",
        f"| TGD, cached teacher targets (fixed batches) | {t_cached:.3f} | "
        f"{t_cached / t_scratch:.2f} |",
        "",
        "| TGD step, teachers live: where the PI input comes from | s / step | × cache |",
        "|---|---:|---:|",
        f"| the PI cache (uint8 rows → float, as without augmentation) | {t_read:.3f} | 1.000 |",
        f"| computed on the fly in the step | {t_fly:.3f} | {t_fly / t_read:.3f} |",
        f"| computed on the fly, {ON_THE_FLY_CHUNK} steps at a time (the training loop on a CPU) "
        f"| {t_chunk:.3f} | {t_chunk / t_read:.3f} |",
        f"| computed on the fly for the next batch in a background thread (the training loop "
        f"on an accelerator; on a CPU it competes for the cores) | {t_ahead:.3f} | "
        f"{t_ahead / t_read:.3f} |",
        "",
        f"On-the-fly PIs of a batch of {b} images (paper mode, 6 PIs each): {t_pi * 1000:.1f} ms "
        f"= {100 * t_pi / t_read:.1f} % of a TGD step with live teachers (needed with "
        f"augmentation, when nothing can be cached).",
    ]
    publish(lines, args.write, "bench_training", "Training and distillation")

if __name__ == "__main__":
    main()
