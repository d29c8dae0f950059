"""Training throughput on an accelerator: the standard loop against the fast loop, in one run.

    python3 benchmarks/bench_gpu.py [--device cuda] [--steps 60] [--batch 128] [--parallel 4]
                                    [--peak-tflops T] [--no-compile] [--no-graphs]
                                    [--write docs/benchmarks.md]
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --steps 2 --parallel 2   # smoke check

For WRN16-1 and WRN16-3 on raw 32×32 images and WRN16-3 on 6×50×50 PI stacks, at the paper's
batch of 128 (issue #14, item 2):

1. images/s of one run with the standard loop (:class:`~tgd_core.training.trainer.Trainer`:
   host-made batches, one host↔device sync a step) and with the fast loop
   (:class:`~tgd_core.training.fast.FastTrainer`), both with the paper recipe's bf16 autocast
   (on CUDA) and channels_last, and their ratio;
2. on CUDA with compile, for WRN16-1 (the students, the shortest steps: :data:`GRAPHS_CASES`),
   the fast loop again with its step replayed as CUDA graphs (``compile_mode:
   reduce-overhead``; ``--no-graphs`` skips it; a failure is named, not fatal);
3. the aggregate images/s of ``--parallel`` fast runs at once, each in its own process (as
   ``tgd experiment --parallel`` runs them), in the compile mode that was faster alone, timed
   from a common barrier to the last finish;
4. TFLOP/s: the FLOPs of one training step (forward and backward, counted by
   ``torch.utils.flop_counter.FlopCounterMode``: matrix products and convolutions) per image ×
   images/s, and that as a fraction of the chip's peak: the rate of a dense matrix product
   measured in the same run (:func:`matmul_tflops`: 8192³ in bf16 on CUDA — about 790 TFLOP/s
   on the H100 and H200 lent here, /work/.library/device/KINDS.md — 1024³ in fp32 on the CPU,
   the precision each device trains in), or ``--peak-tflops`` when given.

Where torch.compile fails in a fast run, the run goes on eagerly (:mod:`tgd_core.training.fast`)
and the case's row says so (``compile_error``, a line under the table).

Each loop trains a scratch student on synthetic data resident on the device (``--steps``
batches an epoch; the pixels do not change the speed): one epoch to warm up (cuDNN autotuning,
torch.compile), then one timed epoch ending with a device synchronisation. The JSON of every
figure goes to ``--json`` and, when ``$OUT`` is set (the device machine), to
``$OUT/bench_gpu.json``; ``--write`` publishes the table as the ``gpu`` section of
docs/benchmarks.md (benchmarks/report.py), also from a JSON brought back from the device
(``--publish-json $OUT/bench_gpu.json --write docs/benchmarks.md``, measuring nothing).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import cpu_name, publish  # noqa: E402

from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW  # noqa: E402
from tgd_core.training import TrainConfig  # noqa: E402
from tgd_core.training.data import Split, TrainData  # noqa: E402
from tgd_core.training.fast import FastTrainer  # noqa: E402
from tgd_core.training.loop_state import LoopState  # noqa: E402
from tgd_core.training.trainer import Trainer  # noqa: E402

# (label, model, input kind, input shape C×H×W)
CASES = (("WRN16-1 raw", "wrn16_1", "raw", (3, 32, 32)),
         ("WRN16-3 raw", "wrn16_3", "raw", (3, 32, 32)),
         ("WRN16-3 PI 6×50×50", "wrn16_3", "pi", (6, 50, 50)))
ENGINES = {"standard": Trainer, "fast": FastTrainer}
GRAPHS = "reduce-overhead"  # torch.compile's mode that replays the step as CUDA graphs
# the cases measured on CUDA graphs too: the students' network, whose steps are the shortest
# (launch-bound); each measurement is one more compilation (a device call has 10 minutes)
GRAPHS_CASES = ("WRN16-1 raw",)
TEST_IMAGES = 256


def synthetic_data(cfg: TrainConfig, kind: str, shape: tuple[int, ...], n: int,
                   device: torch.device) -> TrainData:
    """``n`` random uint8 training inputs (and a small test split) on ``device``."""
    gen = torch.Generator().manual_seed(0)

    def split(count: int) -> Split:
        x = torch.randint(0, 256, (count, *shape), generator=gen, dtype=torch.uint8)
        return Split(torch.randint(0, 10, (count,), generator=gen).to(device),
                     **{kind: x.to(device)})

    norm = {"raw": CIFAR10_RAW, "pi": CIFAR10_PI}[kind]
    return TrainData.from_splits(cfg, split(n), split(TEST_IMAGES), {kind: norm}, 10)


def make_trainer(engine: str, model: str, kind: str, shape, args, out: Path,
                 compile_mode: str = "default") -> Trainer:
    """A set-up trainer of ``engine`` on synthetic data (scratch, paper recipe settings)."""
    cuda = args.device.startswith("cuda")
    cfg = TrainConfig.build(student=model, student_input=kind, batch_size=args.batch,
                            epochs=2, milestones=[1], amp=cuda, channels_last=True,
                            device=args.device, engine=engine, compile=args.compile and cuda,
                            compile_mode=compile_mode, sync_every_steps=max(args.steps, 1),
                            out_dir=str(out))

    class OnSyntheticData(ENGINES[engine]):
        def load_data(self) -> TrainData:
            return synthetic_data(self.cfg, kind, shape, args.steps * args.batch, self.device)

    trainer = OnSyntheticData(cfg, progress=False)
    trainer.setup(resume=False)
    return trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epoch(trainer: Trainer, barrier=None) -> tuple[float, float, float]:
    """Warm-up epoch, then (start, end) wall-clock times of a timed epoch (after ``barrier``);
    and the warm-up epoch's seconds (compilation included)."""
    warm_start = time.time()
    trainer.train_epoch(0)
    synchronize(trainer.device)
    warmup = time.time() - warm_start
    trainer.state = LoopState(epoch=1)
    if barrier is not None:
        barrier.wait()
    start = time.time()
    trainer.train_epoch(1)
    synchronize(trainer.device)
    return start, time.time(), warmup


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one training step (forward and backward) of the trainer's student, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    b = next(iter(trainer.data.train_batches(0)))
    with FlopCounterMode(display=False) as counter:
        with trainer.amp:
            _, losses = trainer.distiller(b.inputs, b.labels)
        sum(losses.values()).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(b.labels)


def measure(engine: str, case, args, barrier=None, compile_mode: str = "default") -> dict:
    """images/s (and FLOPs per image) of one run of ``case`` with ``engine``."""
    _, model, kind, shape = case
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(engine, model, kind, shape, args, Path(tmp) / "run",
                               compile_mode)
        flops = step_flops(trainer)
        start, end, warmup = timed_epoch(trainer, barrier)
    images = args.steps * args.batch
    return {"images": images, "start": start, "end": end, "warmup_seconds": warmup,
            "flops_per_image": flops,
            "images_per_second": images / (end - start), **trainer.result_extras()}


def worker(case, args, barrier, results, compile_mode: str) -> None:
    """One of the concurrent runs (a spawned process)."""
    results.put(measure("fast", case, args, barrier, compile_mode))


def graphed(case, args) -> dict:
    """The fast loop with its step replayed as CUDA graphs: its measurement, or the error
    (one line) that stopped it — the other figures do not depend on it."""
    try:
        return measure("fast", case, args, compile_mode=GRAPHS)
    except Exception as error:  # noqa: BLE001 — any failure is a finding, not the end
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        return {"error": f"{type(error).__name__}: {first_line}"}


def concurrent(case, args, compile_mode: str = "default") -> dict:
    """Aggregate images/s of ``args.parallel`` fast runs in separate processes."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(args.parallel), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(case, args, barrier, results, compile_mode))
             for _ in range(args.parallel)]
    for p in procs:
        p.start()
    runs = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a concurrent run failed (exit {p.exitcode})")
    images = sum(r["images"] for r in runs)
    seconds = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {"runs": args.parallel, "images_per_second": images / seconds,
            "per_run": [r["images_per_second"] for r in runs]}


def tflops(images_per_second: float, flops_per_image: float) -> float:
    return images_per_second * flops_per_image / 1e12


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def matmul_tflops(device: str, repeats: int = 10, warmup: int = 3) -> tuple[float, str]:
    """(TFLOP/s, what was measured) of a dense square matrix product on random data, in the
    precision training uses there: 8192³ bf16 on CUDA, 1024³ fp32 elsewhere; the mean of
    ``repeats`` products after ``warmup``, ending with a device synchronisation."""
    cuda = device.startswith("cuda")
    size, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen, device=device, dtype=dtype) for _ in "ab")
    for _ in range(warmup):
        a @ b
    synchronize(torch.device(device))
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(torch.device(device))
    rate = 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e12
    return rate, f"measured in this run: {size}³ {str(dtype).removeprefix('torch.')} matrix product"


def run(args) -> dict:
    peak, source = ((args.peak_tflops, "given (--peak-tflops)") if args.peak_tflops
                    else matmul_tflops(args.device))
    compiled = args.compile and args.device.startswith("cuda")
    results = {"device": device_name(args.device), "torch": torch.__version__,
               "python": platform.python_version(), "batch": args.batch, "steps": args.steps,
               "parallel": args.parallel, "peak_tflops": peak, "peak_source": source,
               "compile": compiled, "graphs": compiled and args.graphs, "cases": []}
    for case in CASES:
        row = add_rates(measure_case(case, args, results["graphs"]), peak)
        results["cases"].append(row)
        print(json.dumps(row), flush=True)
    return results


def measure_case(case, args, graphs: bool) -> dict:
    """One case's row: images/s of the standard loop, the fast loop, the fast loop on CUDA
    graphs (``graphs``) and ``args.parallel`` fast runs at once in the faster mode."""
    row = {"case": case[0]}
    for engine in ENGINES:
        m = measure(engine, case, args)
        row[engine] = m["images_per_second"]
        row[f"{engine}_warmup_seconds"] = m["warmup_seconds"]
        row["flops_per_image"] = m["flops_per_image"]
        if m.get("compile_error"):
            row["compile_error"] = m["compile_error"]  # its fast loop ran eagerly
    row["speedup"] = row["fast"] / row["standard"]
    row["aggregate_mode"] = "default"
    if graphs and case[0] in GRAPHS_CASES:
        m = graphed(case, args)
        if "error" in m or m.get("compile_error"):
            row["graphs_error"] = m.get("error") or m["compile_error"]
        else:
            row["graphs"], row["graphs_warmup_seconds"] = m["images_per_second"], m[
                "warmup_seconds"]
            if row["graphs"] > row["fast"]:
                row["aggregate_mode"] = GRAPHS
    if args.parallel > 1:
        agg = concurrent(case, args, row["aggregate_mode"])
        row["aggregate"], row["aggregate_per_run"] = agg["images_per_second"], agg["per_run"]
    return row


def add_rates(row: dict, peak: float) -> dict:
    """``row`` with the TFLOP/s and the fraction of ``peak`` of each loop it measured."""
    for key in ("standard", "fast", "graphs", "aggregate"):
        if key in row:
            row[f"{key}_tflops"] = tflops(row[key], row["flops_per_image"])
            row[f"{key}_peak_fraction"] = row[f"{key}_tflops"] / peak
    return row


def table(results: dict, command: str) -> list[str]:
    n = results["parallel"]
    lines = [f"Measured on {results['device']} (torch {results['torch']}), batch "
             f"{results['batch']}, {results['steps']} timed steps per loop, compile "
             f"{'on' if results['compile'] else 'off'}; peak {results['peak_tflops']:.0f} "
             f"TFLOP/s ({results.get('peak_source', 'bf16')}). Command: `{command}`", "",
             f"| network | GFLOP/image (train step) | standard img/s | fast img/s | fast / "
             f"standard | fast TFLOP/s | fast, CUDA graphs img/s | {n} runs at once: img/s "
             f"| TFLOP/s | % of peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["cases"]:
        agg = (f"{r['aggregate']:,.0f}{' (graphs)' if r.get('aggregate_mode') == GRAPHS else ''}"
               f" | {r['aggregate_tflops']:.1f} | {100 * r['aggregate_peak_fraction']:.1f} %"
               if "aggregate" in r else "— | — | —")
        graphs = (f"{r['graphs']:,.0f} ({r['graphs'] / r['standard']:.1f}×)" if "graphs" in r
                  else "failed" if "graphs_error" in r else "—")
        lines.append(f"| {r['case']} | {r['flops_per_image'] / 1e9:.2f} | "
                     f"{r['standard']:,.0f} | {r['fast']:,.0f} | {r['speedup']:.1f}× | "
                     f"{r['fast_tflops']:.2f} | {graphs} | {agg} |")
    lines += [f"\n{r['case']}: torch.compile failed ({r['compile_error']}), so its fast loop "
              "ran eagerly." for r in results["cases"] if r.get("compile_error")]
    lines += [f"\n{r['case']}: the fast loop on CUDA graphs failed ({r['graphs_error']})."
              for r in results["cases"] if r.get("graphs_error")]
    warmups = [f"{r['case']} {r['fast_warmup_seconds']:.0f} s"
               + (f" (on CUDA graphs {r['graphs_warmup_seconds']:.0f} s)"
                  if "graphs_warmup_seconds" in r else "")
               for r in results["cases"] if "fast_warmup_seconds" in r]
    if warmups:
        lines.append("\nThe fast loop's first (warm-up) epoch, compilation included, in one "
                     "process: " + "; ".join(warmups) + ".")
    if any(r.get("aggregate_mode") == GRAPHS for r in results["cases"]):
        lines.append(f"\n(graphs): the {n} runs at once replayed CUDA graphs "
                     f"(`compile_mode: {GRAPHS}`), faster alone than the default mode.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=60, help="batches per (timed) epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4, help="concurrent runs (1: none)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the chip's peak (default: measure a matrix product in this run)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-graphs", dest="graphs", action="store_false",
                        help="skip the fast loop on CUDA graphs (compile_mode reduce-overhead)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--write", help="publish the table into this docs/benchmarks.md")
    parser.add_argument("--publish-json", type=Path, metavar="JSON",
                        help="measure nothing: publish the figures a device run wrote")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.parallel) < 1 or (args.peak_tflops or 1) <= 0:
        parser.error("--steps, --batch, --parallel and --peak-tflops must be positive")
    if args.publish_json:
        results = json.loads(args.publish_json.read_text())
    else:
        results = run(args)
        results["command"] = "python3 benchmarks/bench_gpu.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        text = json.dumps(results, indent=2) + "\n"
        for path in [args.json, Path(os.environ["OUT"]) / "bench_gpu.json"
                     if os.environ.get("OUT") else None]:
            if path is not None:
                path.write_text(text)
    publish(table(results, results.get("command", "(not recorded)").strip()), args.write, "gpu",
            "GPU training throughput: standard vs fast loop (issue #14)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
