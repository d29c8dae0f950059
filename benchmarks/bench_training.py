"""Training and distillation speed on this machine, in one run.

    .venv/bin/python benchmarks/bench_training.py [--steps 6] [--batch 128]
        [--accuracy 2000] [--distill-images 5000 --distill-epochs 3] [--write docs/benchmarks.md]
        [--groups-only]

1. Training throughput (images/s, SGD step with backward) for WRN16-1 and WRN16-3 on raw
   32×32 images and WRN16-3 on 6×50×50 PI stacks, with and without channels_last.
2. Distillation step time of TGD against a scratch WRN16-1 step: teachers (WRN16-3 raw, WRN16-3
   PI) run live under no_grad, or their targets come from the cache (no augmentation): with
   fixed batches, logits per sample and similarity maps per batch — the ratio issue #4 bounds
   by 2.5 —; with batches reshuffled every epoch, logits and features per sample, of which
   each step makes its similarity maps.
3. A TGD step with live teachers whose PI input is read from the PI cache, computed on the fly
   in the step, or computed for the next batch in a background thread as the training loop
   does with augmentation (issue #9); timed in interleaved rounds.
4. Augmented TGD on a CPU (issue #18): a TGD step with live teachers run as each
   ``teacher_inference`` option (exact, BatchNorm folded, int8), and measured-only variants (the
   PI teacher under bf16 autocast, the PI teacher on 2×2-average-pooled 25×25 PIs), against the
   scratch step, all timed in interleaved rounds in one run. With ``--accuracy N``: each
   option's effect on the shipped teachers' accuracy on the first N CIFAR-10 test images; with
   ``--distill-images``: a short augmented TGD run per option (shipped teachers, same seed; see
   ``distill_runs``).
5. Students trained as a group (``tgd experiment --group-students``, issue #18): the real
   training loop (``StudentGroup``: CIFAR-10 batches, crop + flip, on-the-fly PIs, the
   teachers' forward once per step, every student's step) for groups of 1-4 of the cpu
   recipe's methods of one seed (TGD, scratch, KD, MTKD), teachers exact and int8: seconds per
   step per student against a scratch run's step in the same loop, interleaved rounds
   (``group_rows``; ``--groups-only`` runs this part alone, without ``--write``).

Random inputs and random-weight teachers for the timings (speed does not depend on the pixels
or the weights; int8 is calibrated on the random images); best of three timings of ``--steps``
steps after a warm-up step. The scratch step is timed again beside the TGD steps, in the memory
format that was fastest for it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import publish  # noqa: E402

from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW  # noqa: E402
from tgd_core.distill import get_method  # noqa: E402
from tgd_core.nets.models import build_model  # noqa: E402
from tgd_core.nets.network import Network  # noqa: E402
from tgd_core.nets.teacher_inference import TEACHER_INFERENCE, prepare_networks  # noqa: E402
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


def forward_seconds(model: nn.Module, x: torch.Tensor, repeats: int = 2) -> float:
    """Best of ``repeats`` + 1 no-grad forward passes (logits and features; the first one
    also warms up)."""
    with torch.no_grad():
        return min(_timed(lambda: model(x, return_features=True))
                   for _ in range(repeats + 1))


def interleaved(timers: dict, rounds: int = 3) -> dict[str, float]:
    """Best time of each ``timers[name]()`` over ``rounds`` interleaved rounds, so drift on a
    shared machine hits them alike."""
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer())
    return best


class Bf16Teacher(nn.Module):
    """A teacher run under CPU bf16 autocast (measured only: this CPU has no native bf16)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, return_features: bool = False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(x, return_features=return_features)
        if return_features:
            return out[0].float(), [f.float() for f in out[1]]
        return out.float()


class PooledInput(nn.Module):
    """A teacher fed its input 2×2-average-pooled (6×50×50 PIs → 6×25×25; a cheaper PI input,
    measured only: the teacher was trained on full-size PIs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, return_features: bool = False):
        return self.model(F.avg_pool2d(x, 2), return_features=return_features)


# measured-only variants of the PI teacher ("t2"), beside the teacher_inference options
PI_VARIANTS = {"exact, PI teacher under bf16 autocast": Bf16Teacher,
               "exact, PI teacher on 2×2-pooled PIs (25×25)": PooledInput}


def with_pi_variant(teachers: dict[str, Network], wrap) -> dict[str, Network]:
    t2 = teachers["t2"]
    return {**teachers, "t2": Network(wrap(t2.model), t2.input_kind, t2.normalization,
                                      t2.representation)}


SHIPPED = {"t1": ROOT / "checkpoints" / "t1_wrn16_3_raw.pt",
           "t2": ROOT / "checkpoints" / "t2_wrn16_1_pi.pt"}


def paper_teachers(inference: str, views: np.ndarray) -> dict[str, Network]:
    """The paper's teachers, WRN16-3 on raw images and WRN16-3 on 6×50×50 PIs (random
    weights, eval mode), run as ``inference`` (int8: calibrated on ``views`` and their PIs)."""
    torch.manual_seed(0)
    nets = {"t1": Network(build_model("wrn16_3").eval(), "raw", CIFAR10_RAW),
            "t2": Network(build_model("wrn16_3", in_channels=6).eval(), "pi", CIFAR10_PI)}
    return prepare_networks(nets, inference, lambda: views)


def teacher_accuracy(n: int) -> list[str]:
    """Table rows: the shipped teachers run as each option and variant, on the first ``n``
    CIFAR-10 test images: test accuracy, top-1 agreement with the exact teacher, largest
    |logit difference| (int8 calibrated on the first training images, as the trainer does)."""
    from tgd_core.data.datasets import load_dataset
    from tgd_core.nets.checkpoints import load_checkpoint
    from tgd_core.nets.teacher_inference import CALIBRATION_IMAGES, normalized_batches

    images, labels = load_dataset("cifar10", "test", limit=n)
    labels = torch.as_tensor(labels)
    shipped = {r: Network.from_checkpoint(load_checkpoint(p)) for r, p in SHIPPED.items()}
    batches = {r: normalized_batches(net, images) for r, net in shipped.items()}
    train = load_dataset("cifar10", "train", limit=CALIBRATION_IMAGES)[0]
    runs = {name: prepare_networks(shipped, name, lambda: train) for name in TEACHER_INFERENCE}
    runs |= {name: with_pi_variant(shipped, wrap) for name, wrap in PI_VARIANTS.items()}
    with torch.no_grad():
        logits = {name: {r: torch.cat([net.model(x) for x in batches[r]]) for r, net in t.items()}
                  for name, t in runs.items()}
    rows = []
    for name, out in logits.items():
        cells = []
        for r in SHIPPED:
            pred, exact = out[r].argmax(1), logits["exact"][r]
            cells += [f"{100 * (pred == labels).float().mean():.2f}",
                      f"{100 * (pred == exact.argmax(1)).float().mean():.2f}",
                      f"{(out[r] - exact).abs().max():.2g}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def distill_runs(images: int, epochs: int, test_images: int) -> list[str]:
    """Table rows: a short augmented run per ``teacher_inference`` option (TGD, shipped
    teachers) and a scratch run beside them, all with the same protocol and seed: the first
    ``images`` training images, ``epochs`` epochs, cosine LR from 0.1, batch 128, SGD 0.9,
    crop + flip, on-the-fly PIs, channels_last, seed 1234; test accuracy on the first
    ``test_images`` test images after the last epoch; training seconds and their ratio to
    the scratch run's (the real loop: augmentation, PIs, teachers, student)."""
    from tgd_core.training.config import TrainConfig
    from tgd_core.training.trainer import run_training

    common = dict(train_subset=images, test_subset=test_images, epochs=epochs,
                  schedule="cosine", augment=True, pi_on_the_fly=True, channels_last=True,
                  seed=1234, threads=torch.get_num_threads(), eval_every=epochs)
    runs = {"scratch (CE only)": {"method": "scratch"}}
    runs |= {f"TGD, teacher_inference={name}": {
        "method": "tgd", "teachers": {r: str(p) for r, p in SHIPPED.items()},
        "teacher_inference": name} for name in TEACHER_INFERENCE}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(runs.items()):
            cfg = TrainConfig.build(**common, **extra, out_dir=f"{tmp}/{i}")
            results[name] = run_training(cfg, progress=False)
    reference = results["scratch (CE only)"]["train_seconds"]
    return [f"| {name} | {r['last']['test_accuracy']:.2f} | {r['train_seconds']:.0f} | "
            f"{r['train_seconds'] / reference:.2f} |" for name, r in results.items()]


# The cpu recipe's method rows of one seed a group is made of, in this order (TGD first):
# row -> (method, teacher roles); the paper's teachers fill the roles.
GROUP_ROWS = {"tgd": ("tgd", ("t1", "t2")), "scratch": ("scratch", ()),
              "kd_t1": ("kd", ("t1",)), "mtkd": ("mtkd", ("t1", "t2"))}
GROUP_INFERENCE = ("exact", "int8")


def random_teacher_checkpoints(folder: str) -> dict[str, str]:
    """The paper's teachers (WRN16-3 raw, WRN16-3 on 6×50×50 PIs) with random weights, saved
    as checkpoints in ``folder``: role -> path."""
    from tgd_core.nets.checkpoints import save_checkpoint

    torch.manual_seed(0)
    paths = {}
    for role, kind, channels, norm in (("t1", "raw", 3, CIFAR10_RAW),
                                       ("t2", "pi", 6, CIFAR10_PI)):
        paths[role] = str(Path(folder) / f"{role}.pt")
        save_checkpoint(paths[role], build_model("wrn16_3", in_channels=channels),
                        input_kind=kind, normalization=norm, epoch=1)
    return paths


def group_rows(batch: int, steps: int, rounds: int = 3) -> list[str]:
    """Table rows: groups of 1-4 students (:data:`GROUP_ROWS`, TGD first) trained by the real
    group loop (``StudentGroup.train_epoch``: batches of the first ``batch`` × ``steps``
    CIFAR-10 training images, crop + flip, on-the-fly paper-mode PIs, channels_last, the
    random-weight paper teachers once per step as each of :data:`GROUP_INFERENCE`), against a
    scratch run's epoch in the standard loop (``Trainer.train_epoch``, its batches cropped and
    flipped alike); best of ``rounds`` interleaved rounds after a warm-up epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        units = _group_units(tmp, batch, steps, epochs=rounds + 1)
        best = _best_step_seconds(units, steps, rounds)
    t_scratch = best.pop("scratch")
    rows = [f"| scratch alone (standard loop, crop + flip) | {t_scratch:.3f} | {t_scratch:.3f} "
            "| 1.00 |"]
    for (inference, n), t in best.items():
        members = " + ".join(list(GROUP_ROWS)[:n])
        rows.append(f"| {members} (teachers {inference}) | {t:.3f} | {t / n:.3f} | "
                    f"{t / n / t_scratch:.2f} |")
    return rows


def _group_units(tmp: str, batch: int, steps: int, epochs: int) -> dict:
    """``{"scratch": Trainer, (inference, n): StudentGroup}``, set up in ``tmp``: the scratch
    run and, per teacher-inference option, the groups of the first n of :data:`GROUP_ROWS`
    (the teachers loaded, int8 calibrated, once per option and shared by its groups)."""
    from tgd_core.training.config import TrainConfig
    from tgd_core.training.group import StudentGroup
    from tgd_core.training.trainer import Trainer

    teachers = random_teacher_checkpoints(tmp)
    common = dict(train_subset=batch * steps, test_subset=batch, batch_size=batch,
                  epochs=epochs, schedule="cosine", augment=True, pi_on_the_fly=True,
                  channels_last=True, seed=0, threads=torch.get_num_threads())

    def config(row: str, inference: str, folder: str) -> TrainConfig:
        method, roles = GROUP_ROWS[row]
        return TrainConfig.build(**common, method=method, teacher_inference=inference,
                                 teachers={r: teachers[r] for r in roles},
                                 out_dir=f"{folder}/{row}")

    units: dict = {"scratch": Trainer(config("scratch", "exact", f"{tmp}/alone"), progress=False)}
    units["scratch"].setup(resume=False)
    for inference in GROUP_INFERENCE:
        loaded: dict = {}
        for n in range(1, len(GROUP_ROWS) + 1):
            group = StudentGroup([config(row, inference, f"{tmp}/{inference}{n}")
                                  for row in list(GROUP_ROWS)[:n]], progress=False)
            group.teachers.update(loaded)  # each step resets their memo: groups step apart
            group.setup([False] * n)
            loaded = group.teachers
            units[inference, n] = group
    return units


def _best_step_seconds(units: dict, steps: int, rounds: int) -> dict:
    """Each unit's best seconds per step over ``rounds`` interleaved epochs after a warm-up
    epoch (each epoch restarts at step 0: no checkpoint, no metrics row)."""
    best = dict.fromkeys(units, float("inf"))
    for epoch in range(rounds + 1):  # epoch 0 warms up
        for key, unit in units.items():
            for member in getattr(unit, "members", [unit]):
                member.state.step = 0
            seconds = _timed(lambda unit=unit, epoch=epoch: unit.train_epoch(epoch)) / steps
            if epoch:
                best[key] = min(best[key], seconds)
    return best


def group_table(batch: int, steps: int) -> list[str]:
    """The group section's lines (:func:`group_rows`)."""
    return [
        "",
        f"Students trained as a group (`tgd experiment --group-students`): the real loop on "
        f"{batch * steps:,} CIFAR-10 training images in batches of {batch}, crop + flip, "
        "on-the-fly paper-mode PIs, channels_last, teachers WRN16-3 raw + WRN16-3 on 6×50×50 "
        "PIs (random weights) run once per step for the whole group; WRN16-1 students of the "
        "cpu recipe's rows of one seed. Per student: the group's step ÷ its students; "
        "× scratch: against the scratch run's step in the same loop and run.",
        "",
        "| students in one group | s / step (group) | s / step per student | × scratch |",
        "|---|---:|---:|---:|",
        *group_rows(batch, steps),
    ]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def to_channels_last(inputs):
    return {k: v.contiguous(memory_format=torch.channels_last) for k, v in inputs.items()}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--write", help="update this Markdown file's section")
    ap.add_argument("--accuracy", type=int, default=0, metavar="N",
                    help="shipped teachers' accuracy per option on N test images (0: skip)")
    ap.add_argument("--distill-images", type=int, default=0, metavar="N",
                    help="short augmented TGD run per option on N training images (0: skip)")
    ap.add_argument("--distill-epochs", type=int, default=3)
    ap.add_argument("--groups-only", action="store_true",
                    help="only the students-in-a-group table (printed; not with --write)")
    args = ap.parse_args()
    if args.groups_only and args.write:
        ap.error("--groups-only measures one table: it cannot write the whole section")
    return args


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    b = args.batch
    if args.groups_only:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} CPU cores")
        print("\n".join(group_table(b, args.steps)))
        return
    raw = {"raw": torch.rand(b, 3, 32, 32), "pi": torch.rand(b, 6, 50, 50)}
    labels = torch.randint(0, 10, (b,))
    rows = network_rows(raw, labels, args.steps)
    views = (raw["raw"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    best_cl = min((r for r in rows if r[0].startswith("wrn16_1")), key=lambda r: r[2])
    cl = best_cl[1] == "channels_last"
    inputs = to_channels_last(raw) if cl else raw
    t_dist, t_pi_teacher = distillation_timings(inputs, labels, views, cl, args.steps)
    t_src, t_pi = pi_source_timings(inputs, labels, views, cl, args.steps)
    lines = (header_lines(args) + network_lines(rows)
             + distillation_lines(t_dist, t_pi_teacher) + pi_source_lines(t_src, t_pi, b)
             + group_table(b, args.steps) + accuracy_lines(args.accuracy)
             + distill_lines(args.distill_images, args.distill_epochs))
    publish(lines, args.write, "bench_training", "Training and distillation")


def network_rows(raw: dict[str, torch.Tensor], labels: torch.Tensor, steps: int
                 ) -> list[tuple[str, str, float, float]]:
    """(network on input, memory format, s / step, images / s) of a scratch SGD step, for
    WRN16-1 and WRN16-3 on raw images and WRN16-3 on PI stacks, each memory format."""
    rows = []
    for model, kind, channels in (("wrn16_1", "raw", 3), ("wrn16_3", "raw", 3),
                                  ("wrn16_3", "pi", 6)):
        for cl in (False, True):
            net = build_model(model, in_channels=channels)
            norm = CIFAR10_RAW if kind == "raw" else CIFAR10_PI
            d = get_method("scratch")(Network(net, kind, norm))
            inputs = raw
            if cl:
                d = d.to(memory_format=torch.channels_last)
                inputs = to_channels_last(raw)
            t = step_seconds(d, inputs, labels, steps)
            rows.append((f"{model} on {kind}" + (" (6×50×50)" if kind == "pi" else " (3×32×32)"),
                         "channels_last" if cl else "contiguous", t, len(labels) / t))
    return rows


def tgd_distiller(cl: bool, views: np.ndarray, teachers: dict[str, Network] | None = None):
    """A TGD distiller (WRN16-1 student, seed 0) with ``teachers`` (default: the paper's
    teachers run exactly), in channels_last where ``cl``."""
    torch.manual_seed(0)
    student = Network(build_model("wrn16_1"), "raw", CIFAR10_RAW)
    d = get_method("tgd")(student, teachers or paper_teachers("exact", views))
    return d.to(memory_format=torch.channels_last) if cl else d


def distillation_timings(inputs, labels, views: np.ndarray, cl: bool, steps: int
                         ) -> tuple[dict[str, float], dict[str, float]]:
    """s / step of the scratch step, the cached-targets TGD step and TGD with teachers live
    (each ``teacher_inference`` option and the measured-only PI teacher variants), timed in
    interleaved rounds; and s of one no-grad forward of the PI teacher in fp32 and bf16."""
    torch.manual_seed(0)
    d = get_method("scratch")(Network(build_model("wrn16_1"), "raw", CIFAR10_RAW))
    d = d.to(memory_format=torch.channels_last) if cl else d
    d_cached, d_rows = tgd_distiller(cl, views), tgd_distiller(cl, views)
    cache, _ = TargetCache.create(d_cached, len(labels), inputs, augment=False, fixed_batches=True)
    rows, _ = TargetCache.create(d_rows, len(labels), inputs, augment=False, fixed_batches=False)
    live = {f"teachers live, teacher_inference={name}":
            tgd_distiller(cl, views, paper_teachers(name, views)) for name in TEACHER_INFERENCE}
    live |= {f"teachers live, {name} (measured only)": tgd_distiller(cl, views, with_pi_variant(
        paper_teachers("exact", views), wrap)) for name, wrap in PI_VARIANTS.items()
        if wrap is not Bf16Teacher}  # bf16 is timed alone below: a step would take minutes
    n_live = max(2, steps // 2)
    timers = {"scratch (CE only)": lambda: step_seconds(d, inputs, labels, steps, repeats=1),
              "cached teacher targets (fixed batches)": lambda: step_seconds(
                  d_cached, inputs, labels, steps, cache=cache, repeats=1),
              "cached teacher features, similarity maps made each step (batches reshuffled, "
              "the paper's protocol)": lambda: step_seconds(d_rows, inputs, labels, steps,
                                                          cache=rows, repeats=1)}
    timers |= {f"TGD, {name}": lambda g=g: step_seconds(g, inputs, labels, n_live, repeats=1)
               for name, g in live.items()}
    t_dist = interleaved(timers)
    del live
    pi_teacher = paper_teachers("exact", views)["t2"].model
    pi_input = CIFAR10_PI.apply(inputs["pi"])
    t_pi_teacher = {name: forward_seconds(model, pi_input)
                    for name, model in (("fp32", pi_teacher), ("bf16", Bf16Teacher(pi_teacher)))}
    return t_dist, t_pi_teacher


def pi_source_timings(inputs, labels, views: np.ndarray, cl: bool, steps: int
                      ) -> tuple[dict[str, float], float]:
    """s / step of a TGD step with live teachers whose PI input is read from the PI cache
    (uint8 rows → float), computed on the fly in the step, computed for ON_THE_FLY_CHUNK steps
    in one call (the training loop on a CPU), or for the next batch in a background thread (the
    training loop on an accelerator), timed in interleaved rounds so drift on a shared machine
    hits them alike; and s for one batch's on-the-fly PIs."""
    b = len(labels)
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
    d, n_live = tgd_distiller(cl, views), max(2, steps // 2)
    t_src = interleaved({name: lambda make=make: step_seconds(
        d, inputs, labels, n_live, make_inputs=make, repeats=1) for name, make in sources.items()})
    ahead.close()
    return t_src, t_pi


def header_lines(args: argparse.Namespace) -> list[str]:
    """The machine and the command."""
    return [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), batch {args.batch}, "
        f"Python {platform.python_version()}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_training.py --steps {args.steps} "
        f"--batch {args.batch}" + (f" --accuracy {args.accuracy}" if args.accuracy else "")
        + (f" --distill-images {args.distill_images} --distill-epochs {args.distill_epochs}"
           if args.distill_images else "") + "`",
    ]


def network_lines(rows: list[tuple[str, str, float, float]]) -> list[str]:
    return ["", "| network | memory format | s / step | images / s |", "|---|---|---:|---:|",
            *(f"| {n} | {m} | {t:.3f} | {r:,.0f} |" for n, m, t, r in rows)]


def distillation_lines(t_dist: dict[str, float], t_pi_teacher: dict[str, float]) -> list[str]:
    t_scratch = t_dist["scratch (CE only)"]
    return [
        "",
        "| distillation step (WRN16-1 student; teachers WRN16-3 raw + WRN16-3 on 6×50×50 PIs) "
        "| s / step | × scratch |",
        "|---|---:|---:|",
        *(f"| {name} | {t:.3f} | {t / t_scratch:.2f} |" for name, t in t_dist.items()),
        "",
        f"The PI teacher (WRN16-3 on 6×50×50) alone, one no-grad forward of the batch: float32 "
        f"{t_pi_teacher['fp32']:.3f} s, under bf16 autocast {t_pi_teacher['bf16']:.3f} s "
        f"({t_pi_teacher['bf16'] / t_pi_teacher['fp32']:.1f}×; this CPU has no native bf16).",
    ]


def pi_source_lines(t_src: dict[str, float], t_pi: float, b: int) -> list[str]:
    t_read, t_fly, t_chunk, t_ahead = (t_src[k] for k in ("cache", "fly", "chunk", "ahead"))
    return [
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


def accuracy_lines(n: int) -> list[str]:
    """``--accuracy N``: the shipped teachers run as each option (none without it)."""
    if not n:
        return []
    return [
        "",
        f"Shipped teachers run as each option, on the first {n:,} CIFAR-10 test "
        f"images (`--accuracy {n}`): accuracy (%), top-1 agreement with the "
        "exact teacher (%), largest |logit difference|.",
        "",
        "| teachers run as | T1 WRN16-3 raw: acc. | agree | max Δ | T2 WRN16-1 PI: acc. "
        "| agree | max Δ |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *teacher_accuracy(n),
    ]


def distill_lines(n: int, e: int) -> list[str]:
    """``--distill-images N``: short augmented runs per option (none without it)."""
    if not n:
        return []
    return [
        "",
        f"Short augmented runs, shipped teachers, same seed (`--distill-images {n} "
        f"--distill-epochs {e}`): {n:,} training images × {e} epochs, cosine LR from 0.1, "
        "batch 128, crop + flip, on-the-fly PIs, channels_last, seed 1234; test accuracy on "
        "the first 2,000 test images after the last epoch.",
        "",
        "| run | test accuracy (%) | training s | × scratch run |",
        "|---|---:|---:|---:|",
        *distill_runs(n, e, 2000),
    ]


if __name__ == "__main__":
    main()
