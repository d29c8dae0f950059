"""The training loop for every method: teachers, scratch students and distilled students.

``run_training(cfg)`` trains ``cfg.student`` with the method ``cfg.method`` (a
:class:`~tgd_core.distill.Distiller`) and writes to ``cfg.out_dir``:

- ``config.json`` — the validated config; ``metrics.jsonl`` — one JSON line per epoch with every
  loss term, train accuracy, test accuracy/NLL/ECE, learning rate, time and throughput;
- ``latest.pt`` — everything needed to resume exactly (weights, optimizer, position in the
  schedule, running sums of the epoch in progress); ``best.pt`` — the best test accuracy so far;
- ``result.json`` — best and last epoch metrics, written when the run ends.

Every file is written atomically (:func:`~tgd_core.core.fileio.atomic_write`), in the order
``latest.pt``, ``best.pt``, the epoch's ``metrics.jsonl`` row, and ``result.json`` last: what a
reader of the metrics sees is never ahead of what a resume restores. Resuming (``resume=True``)
continues from ``latest.pt`` and gives the weights an uninterrupted run gives: batches and
augmentation are functions of (seed, epoch, step); it first repairs what a crash between two
writes left (a metrics row or ``best.pt`` the checkpoint is ahead of, temporary files).

Divergence stops the run with a one-line :class:`TGDError` naming where it happened and the
last good checkpoint: a non-finite loss (checked every step), non-finite weights, BatchNorm
buffers or optimizer state (checked by every save, which refuses them) or non-finite epoch
metrics. No checkpoint and no metrics row is ever written with NaN or inf in it.

Started by ``torchrun`` with N processes, the loop trains data-parallel (PyTorch DDP) and
computes what one process computes with the same global batch (:mod:`tgd_core.core.distributed`);
rank 0 writes every file, and checkpoints resume with any number of processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from tgd_core.core import distributed
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, json_text, remove_stale_temps
from tgd_core.distill import get_method
from tgd_core.evaluation.metrics import evaluate_logits
from tgd_core.nets.checkpoints import (
    NonFiniteError,
    describe_non_finite,
    load_checkpoint,
    non_finite_tensors,
    save_checkpoint,
)
from tgd_core.nets.models import build_model
from tgd_core.nets.network import Network
from tgd_core.training.config import TrainConfig
from tgd_core.training.data import TrainData, prefetch
from tgd_core.training.targets import TargetCache


class RunContext(Protocol):
    """What a caller (the CLI, a background job) offers the loop; every member is optional."""

    def progress(self, fraction: float, epoch: int | None = None, eta: float | None = None,
                 message: str | None = None) -> None: ...

    def log(self, metrics: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


class Stopped(Exception):
    """Raised when the context asked the run to stop; ``latest.pt`` holds the position."""


def learning_rate(cfg: TrainConfig, epoch_float: float) -> float:
    """LR at a fractional epoch: ``step`` (× gamma at each milestone, per epoch), ``cosine``
    (per step, to 0) or ``onecycle`` (linear warm-up over 30 % from lr/25, cosine to lr/1e4);
    plus an optional linear warm-up of ``warmup_epochs``."""
    e, total = epoch_float, cfg.epochs
    if cfg.schedule == "step":
        lr = cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if int(e) >= m)
    elif cfg.schedule == "cosine":
        lr = 0.5 * cfg.lr * (1 + math.cos(math.pi * min(e / total, 1.0)))
    else:
        peak = 0.3 * total
        if e < peak:
            lr = cfg.lr / 25 + (cfg.lr - cfg.lr / 25) * e / peak
        else:
            t = min((e - peak) / (total - peak), 1.0)
            lr = cfg.lr / 1e4 + 0.5 * (cfg.lr - cfg.lr / 1e4) * (1 + math.cos(math.pi * t))
    if cfg.warmup_epochs and e < cfg.warmup_epochs:
        lr *= (e + 1e-8) / cfg.warmup_epochs
    return lr


def load_teacher(path: str, device: torch.device) -> Network:
    ckpt = load_checkpoint(path)
    return Network(ckpt.build(device), ckpt.input_kind, ckpt.normalization)


def _call(ctx, name: str, *args, **kwargs):
    fn = getattr(ctx, name, None) if ctx is not None else None
    return fn(*args, **kwargs) if fn is not None else None


def run_training(cfg: TrainConfig, *, resume: bool = False, ctx: RunContext | None = None,
                 progress: bool | None = None) -> dict[str, Any]:
    """Train per ``cfg`` (see module doc); returns the result dict (also in result.json)."""
    out = Path(cfg.out_dir)
    latest, best_path = out / "latest.pt", out / "best.pt"
    metrics_path = out / "metrics.jsonl"
    dist, device = distributed.setup(cfg.device)
    main = dist.is_main
    if resume and not latest.exists():
        raise TGDError(f"{out}: nothing to resume (no latest.pt)")
    if not resume and latest.exists():
        raise TGDError(f"{out} already holds a run: pass --resume to continue it, or choose "
                       "another output folder")
    if resume:
        saved_cfg = json.loads((out / "config.json").read_text())
        changed = cfg.differences(saved_cfg)  # placement aside
        if changed:
            raise TGDError(f"{out}: the config differs from the run's in {changed}; resume "
                           "with the same config")
    dist.barrier()  # every rank has checked the folder before rank 0 writes to it
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)  # left by a process killed while writing
        atomic_write(out / "config.json", cfg.model_dump_json(indent=2) + "\n")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    method = get_method(cfg.method)
    teachers = {role: load_teacher(path, device) for role, path in cfg.teachers.items()}
    for role, path in cfg.teachers.items():
        if teachers[role].input_kind == "pi":
            trained_on = load_checkpoint(path).config.get("pi")
            if trained_on is not None and trained_on != cfg.pi:
                raise TGDError(f"teacher {role} ({path}) was trained on PIs {trained_on}, but "
                               f"this run feeds it {cfg.pi}: set pi to the teacher's")
    kinds = {cfg.student_input, *(t.input_kind for t in teachers.values())}
    with dist.main_first():  # rank 0 fills the PI cache, the others then read it
        data = TrainData(cfg, kinds, device)
    in_channels = 3 if cfg.student_input == "raw" else data.test.pi.shape[1]
    student = build_model(cfg.student, in_channels=in_channels, num_classes=data.num_classes)
    if cfg.init_student and not resume:
        init = load_checkpoint(cfg.init_student)
        if (init.model, init.in_channels) != (cfg.student, in_channels):
            raise TGDError(f"init_student {cfg.init_student} is a {init.model} on "
                           f"{init.in_channels} channels, the student a {cfg.student} on "
                           f"{in_channels}")
        student.load_state_dict(init.state_dict)
    student_norm = data.normalizations[cfg.student_input]
    if dist.enabled and cfg.sync_batchnorm:
        student = distributed.sync_batchnorm(student, device)
    distiller = method(Network(student, cfg.student_input, student_norm), teachers,
                       method.Params(**cfg.method_params)).to(device)
    if cfg.channels_last:
        distiller.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(list(distiller.trainable_parameters()), lr=cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                nesterov=cfg.nesterov)

    state = {"epoch": 0, "step": 0, "sums": {}, "correct": 0, "seen": 0, "elapsed": 0.0,
             "epoch_elapsed": 0.0, "best_accuracy": -1.0, "best_epoch": None, "best": None,
             "last": None}
    last_good = "none"  # the newest checkpoint that passed the finiteness check, described
    if resume:
        ckpt = load_checkpoint(latest)
        student.load_state_dict(ckpt.state_dict)
        if not ckpt.training_state:
            raise TGDError(f"{latest}: holds no training state to resume from")
        distiller.load_state_dict({**distiller.state_dict(), **ckpt.training_state["method"]})
        optimizer.load_state_dict(ckpt.optimizer)
        state = dict(ckpt.training_state["loop"])
        last_good = f"{latest} ({_position(state)})"
    model = distributed.data_parallel(distiller, dist, device,
                                      buffers_synced=cfg.sync_batchnorm)

    def save(path: Path, metrics: dict | None = None) -> None:
        """Write a checkpoint of the current state (rank 0); a refused non-finite one stops
        the run as diverged."""
        nonlocal last_good
        if main:
            try:
                save_checkpoint(path, student, input_kind=cfg.student_input,
                                normalization=student_norm, optimizer=optimizer,
                                training_state={"loop": state, "method": distiller.extra_state()},
                                epoch=state["epoch"], metrics=metrics or {},
                                config=cfg.model_dump())
            except NonFiniteError as exc:
                raise _diverged(_position(state), f"{exc.detail} in the weights, buffers or "
                                "optimizer state", last_good) from None
        if path == latest:
            last_good = f"{latest} ({_position(state)})"

    if main:
        _repair_after_crash(metrics_path, best_path, state, save, ctx)

    _, probe_idx = data.batch_indices(0, 0)
    probe_idx = probe_idx[dist.shard(len(probe_idx))]
    cache = TargetCache.create(distiller, len(data.train),
                               data.inputs(data.train, probe_idx.to(device)),
                               augment=cfg.augment, fixed_batches=cfg.fixed_batches,
                               enabled=cfg.teacher_cache)
    steps = data.steps_per_epoch()
    total_steps = cfg.epochs * steps
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)
    show = (progress if progress is not None else None) if main else False
    terms: list[str] = []  # the loss terms' names, in order, once known

    def train_step(b, epoch: int) -> list[float]:
        """One SGD step on batch ``b``; returns the totals over ranks: Σ term·n per loss term,
        then correct, seen, non-finite losses and stop requests (one reduction a step)."""
        inputs, labels = b.inputs, b.labels
        lr = learning_rate(cfg, epoch + b.step / steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if cfg.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last)
                      for k, v in inputs.items()}
        with amp:
            targets = cache.targets(distiller, inputs, b.idx, b.batch) if cache else None
            logits, losses = model(inputs, labels, targets)
            # per-sample means weighted by this shard's share of the global batch: DDP's
            # gradient average is then the global mean's gradient (1 on one process)
            share = len(labels) * dist.world / b.global_size
            loss = sum(v if k in distiller.batch_level_terms else v * share
                       for k, v in losses.items())
        terms[:] = terms or list(losses)
        totals = dist.sum(torch.tensor(
            [float(losses[k].detach()) * len(labels) for k in terms]
            + [int((logits.argmax(1) == labels).sum()), len(labels),
               float(not torch.isfinite(loss)), float(bool(_call(ctx, "should_stop")))],
            dtype=torch.float64)).tolist()
        if totals[-2]:
            values = {k: v / totals[-3] for k, v in zip(terms, totals)}
            raise _diverged(f"epoch {epoch + 1}, step {b.step + 1}",
                            f"the loss became non-finite ({values})", last_good)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return totals

    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        distiller.train()
        t_seg = time.perf_counter()  # start of this stretch of the epoch (resumes split it)
        bar = tqdm(total=steps, initial=state["step"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="step", file=sys.stderr, leave=False,
                   disable=None if show is None else not show)
        batches = data.train_batches(epoch, state["step"], dist)
        if data.on_the_fly and device.type != "cpu":
            # the CPU computes the next PIs while the accelerator runs this step (on a CPU
            # device the two would compete for the same cores)
            batches = prefetch(batches)
        with contextlib.closing(batches):  # a stop or an error ends the producer too
            for b in batches:
                step = b.step
                totals = train_step(b, epoch)
                for k, v in zip(terms, totals):
                    state["sums"][k] = state["sums"].get(k, 0.0) + v
                state["correct"] += int(totals[-4])
                state["seen"] += int(totals[-3])
                state["step"] = step + 1
                bar.update(1)
                done = epoch * steps + step + 1
                epoch_time = state["epoch_elapsed"] + time.perf_counter() - t_seg
                rate = done / max(state["elapsed"] + epoch_time, 1e-9)  # steps per second
                if main and (step % 10 == 0 or step + 1 == steps):
                    _call(ctx, "progress", done / total_steps, epoch=epoch + 1,
                          eta=(total_steps - done) / rate)
                stop = bool(totals[-1])
                every = cfg.checkpoint_every_steps
                if stop or (every and state["step"] % every == 0 and state["step"] < steps):
                    state["epoch_elapsed"], t_seg = epoch_time, time.perf_counter()
                    save(latest)
                    if stop:
                        bar.close()
                        raise Stopped(f"stopped at epoch {epoch + 1}, step {step + 1}")
        bar.close()
        epoch_time = state["epoch_elapsed"] + time.perf_counter() - t_seg
        row = {"epoch": epoch + 1, "lr": learning_rate(cfg, epoch),
               **{f"train_{k}": v / max(state["seen"], 1) for k, v in state["sums"].items()},
               "train_accuracy": 100.0 * state["correct"] / max(state["seen"], 1),
               "epoch_seconds": epoch_time, "images_per_second": state["seen"] / epoch_time}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            result = evaluate_distiller(distiller, data, dist)
            row.update({"test_accuracy": result.accuracy, "test_nll": result.nll,
                        "test_ece": result.ece})
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise _diverged(f"end of epoch {epoch + 1}", f"non-finite metrics {bad} "
                            f"({_weights_report(student)})", last_good)
        state.update(epoch=epoch + 1, step=0, sums={}, correct=0, seen=0, epoch_elapsed=0.0,
                     elapsed=state["elapsed"] + epoch_time, last=row)
        is_best = row.get("test_accuracy", -1.0) > state["best_accuracy"]
        if is_best:
            state.update(best_accuracy=row["test_accuracy"], best_epoch=epoch + 1, best=row)
        save(latest, row)  # checkpoints first: a metrics row is never ahead of them
        if is_best:
            save(best_path, row)
        if main:
            _append_metrics(metrics_path, row)
            _call(ctx, "log", row)

    result = {"best_epoch": state["best_epoch"], "best": state["best"], "last": state["last"],
              "epochs": cfg.epochs, "train_seconds": state["elapsed"],
              "selection": "best = highest test accuracy over the evaluated epochs"}
    if main:
        atomic_write(out / "result.json", json_text(result, indent=2) + "\n", fault="result")
    dist.barrier()  # the run's files are complete before any rank moves on
    return result


@torch.no_grad()
def evaluate_distiller(distiller, data: TrainData,
                       dist: distributed.DistContext = distributed.SINGLE):
    """Test-set accuracy/NLL/ECE of the student (eval mode restored afterwards); in a
    distributed run each rank predicts its part of the test set and the logits are gathered."""
    was = distiller.training
    distiller.eval()
    logits = torch.cat([distiller.forward_test(x).float()
                        for x, _ in data.test_batches(shard=dist)])
    logits = distributed.gather_rows(logits).cpu()
    distiller.train(was)
    return evaluate_logits(logits, data.test.labels.cpu().numpy())


def _position(state: dict[str, Any]) -> str:
    """Where the loop state is: ``"end of epoch E"`` or ``"epoch E, step S"``."""
    if state["step"]:
        return f"epoch {state['epoch'] + 1}, step {state['step']}"
    return f"end of epoch {state['epoch']}" if state["epoch"] else "start"


def _weights_report(model: torch.nn.Module) -> str:
    """Whether the weights and buffers are finite, for a divergence message."""
    bad, total = non_finite_tensors(model.state_dict().items())
    if not bad:
        return "the weights and buffers are finite"
    return f"{describe_non_finite(bad, total)} in the weights and buffers"


def _diverged(where: str, what: str, last_good: str) -> TGDError:
    """The one-line error that stops a diverged run."""
    return TGDError(f"training diverged at {where}: {what}; last good checkpoint: {last_good}")


def _metric_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (none when absent). A torn last line — what a crash in an
    in-place append of an earlier version leaves — is dropped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i + 1 < len(lines):
                raise TGDError(f"{path}: line {i + 1} is not JSON") from None
    return rows


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Add the epoch's row to ``metrics.jsonl``, crash-safely: the file is rewritten
    atomically (a few KB for a 200-epoch run), so it never holds a torn line."""
    old = path.read_text() if path.exists() else ""
    atomic_write(path, old + json_text(row) + "\n", fault="metrics-row")


def _repair_after_crash(metrics_path: Path, best_path: Path, state: dict[str, Any], save,
                        ctx: RunContext | None) -> None:
    """Make the run's files agree with the state the run starts from (``latest.pt`` when
    resuming, epoch 0 otherwise).

    ``metrics.jsonl`` keeps one row per finished epoch: rows of epochs the run will redo go
    (and a torn line of an older version), and the row of the checkpoint's last epoch — missing
    when the process died between the checkpoint and the row — is rewritten from its training
    state (``last``). ``best.pt`` is rewritten when the process died between ``latest.pt``
    and it.
    """
    kept = [r for r in _metric_rows(metrics_path) if r["epoch"] <= state["epoch"]]
    last = state["last"]
    if last is not None and (not kept or kept[-1]["epoch"] < last["epoch"]):
        kept.append(last)
        _call(ctx, "log", last)
    text = "".join(json_text(r) + "\n" for r in kept)
    if text != (metrics_path.read_text() if metrics_path.exists() else ""):
        atomic_write(metrics_path, text, fault="metrics-row")
    if state["best_epoch"] == state["epoch"] and not state["step"]:
        if not best_path.exists() or load_checkpoint(best_path).epoch != state["epoch"]:
            save(best_path, state["best"])
