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

The loop is a :class:`Trainer` (setup, :meth:`~Trainer.train`, :meth:`~Trainer.train_epoch`,
:meth:`~Trainer.train_step`, :meth:`~Trainer.evaluate`, the epoch-end writes): a variant
overrides the methods it changes (:class:`~.fast.FastTrainer`; :class:`~.group.GroupMember`,
driven with others by a :class:`~.group.StudentGroup`). Its position is a
:class:`~.loop_state.LoopState`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from tgd_core.core import distributed
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, folder_lock, json_text, remove_stale_temps
from tgd_core.distill import get_method
from tgd_core.evaluation.metrics import evaluate_logits
from tgd_core.nets.checkpoints import (
    Checkpoint,
    NonFiniteError,
    check_shapes,
    describe_non_finite,
    load_checkpoint,
    load_optimizer_state,
    non_finite_tensors,
    require_fit,
    save_checkpoint,
)
from tgd_core.nets.models import build_model
from tgd_core.nets.network import Network
from tgd_core.training.config import TrainConfig
from tgd_core.training.data import TrainBatch, TrainData, prefetch
from tgd_core.training.loop_state import LoopState, StepResult
from tgd_core.training.run_files import append_metrics, call_context, repair_after_crash
from tgd_core.training.stopping import Stopped
from tgd_core.training.targets import TargetCache, cache_budget


class RunContext(Protocol):
    """What a caller (the CLI, a background job) offers the loop; every member is optional."""

    def progress(self, fraction: float, epoch: int | None = None, eta: float | None = None,
                 message: str | None = None) -> None: ...

    def log(self, metrics: dict[str, Any]) -> None: ...

    def should_stop(self) -> bool: ...


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


def run_training(cfg: TrainConfig, *, resume: bool = False, ctx: RunContext | None = None,
                 progress: bool | None = None) -> dict[str, Any]:
    """Train per ``cfg`` (see module doc); returns the result dict (also in result.json).
    ``progress``: show the tqdm bar (None: when stderr is a terminal)."""
    return trainer_class(cfg)(cfg, ctx=ctx, progress=progress).run(resume=resume)


def trainer_class(cfg: TrainConfig) -> type[Trainer]:
    """The loop ``cfg.engine`` selects: :class:`Trainer`, or the accelerator variant
    :class:`~tgd_core.training.fast.FastTrainer` (``fast``; ``auto``: on CUDA)."""
    from tgd_core.core.devices import select_device
    from tgd_core.training.fast import FastTrainer, uses_fast_engine

    return FastTrainer if uses_fast_engine(cfg.engine, select_device(cfg.device)) else Trainer


class Trainer:
    """One training run of ``cfg`` (see the module doc): :meth:`run` sets up, trains every
    remaining epoch and writes the result."""

    def __init__(self, cfg: TrainConfig, *, ctx: RunContext | None = None,
                 progress: bool | None = None) -> None:
        self.cfg, self.ctx, self.show_progress = cfg, ctx, progress
        self.out = Path(cfg.out_dir)
        self.latest_path, self.best_path = self.out / "latest.pt", self.out / "best.pt"
        self.metrics_path = self.out / "metrics.jsonl"
        self.state = LoopState()
        self.last_good = "none"  # the newest checkpoint that passed the finiteness check
        self.terms: list[str] = []  # the loss terms' names, in order, once known

    def run(self, *, resume: bool = False) -> dict[str, Any]:
        """Set up (continuing ``latest.pt`` when ``resume``), train, write result.json — the
        run folder locked meanwhile (:func:`folder_lock`; under torchrun by rank 0), so that
        no second process trains it at the same time."""
        main = os.environ.get("RANK", "0") == "0"
        with folder_lock(self.out, "training this run") if main else contextlib.nullcontext():
            self.setup(resume)
            self.train()
            return self.finish()

    # -- setup ------------------------------------------------------------------------------

    def setup(self, resume: bool) -> None:
        """Processes, folder, teachers, data, student, distiller, optimizer, the resumed
        state, the DDP wrapper, the crash repair and the teacher-target cache, in this order
        (the order of the random draws is part of a run's reproducibility)."""
        self.dist, self.device = distributed.setup(self.cfg.device)
        self.main = self.dist.is_main
        self.check_folder(resume)
        self.prepare_folder()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.method = get_method(self.cfg.method)
        self.teachers = self.load_teachers()
        self.data = self.load_data()
        self.check_teachers()
        self.student = self.build_student(resume)
        self.distiller = self.build_distiller()
        self.optimizer = self.build_optimizer()
        if resume:
            self.load_latest()
        self.model = distributed.data_parallel(self.distiller, self.dist, self.device,
                                               buffers_synced=self.cfg.sync_batchnorm)
        if self.main:
            repair_after_crash(self.metrics_path, self.best_path, self.state,
                               self.save_checkpoint, self.ctx)
        self.amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp)
        self.cache = self.build_target_cache()
        self.steps = self.data.steps_per_epoch()
        self.total_steps = self.cfg.epochs * self.steps

    def check_folder(self, resume: bool) -> None:
        """Refuse a resume without ``latest.pt``, a new run over an existing one, and a resume
        whose config differs from the run's (placement aside) or whose config.json cannot be
        read as a JSON object."""
        from tgd_core.commands import read_json_object

        out = self.out
        if resume and not self.latest_path.exists():
            raise TGDError(f"{out}: nothing to resume (no latest.pt)")
        if not resume and self.latest_path.exists():
            raise TGDError(f"{out} already holds a run: pass --resume to continue it, or "
                           "choose another output folder")
        if resume:
            changed = self.cfg.differences(read_json_object(out / "config.json",
                                                            "the run's config"))
            if changed:
                raise TGDError(f"{out}: the config differs from the run's in {changed}; resume "
                               "with the same config")

    def prepare_folder(self) -> None:
        """Rank 0, once every rank has checked the folder: create it, remove temporary files
        a killed process left, write config.json."""
        self.dist.barrier()
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out)
            atomic_write(self.out / "config.json", self.cfg.model_dump_json(indent=2) + "\n")

    def load_teachers(self) -> dict[str, Network]:
        """The teachers by role (:func:`load_teacher_networks`)."""
        return load_teacher_networks(self.cfg, self.cfg.teachers, self.device)

    def load_data(self) -> TrainData:
        """The inputs the student and the teachers need (rank 0 fills the PI cache first,
        the others then read it)."""
        kinds = {self.cfg.student_input, *(t.input_kind for t in self.teachers.values())}
        with self.dist.main_first():
            return TrainData(self.cfg, kinds, self.device)

    def check_teachers(self) -> None:
        """Every teacher predicts the dataset's classes (else a one-line TGDError naming its
        checkpoint, its class count and the dataset's)."""
        for role, net in self.teachers.items():
            if net.num_classes is not None:
                require_fit(f"teacher {role} {self.cfg.teachers[role]}",
                            {"num_classes": net.num_classes},
                            {"num_classes": self.data.num_classes})

    def build_student(self, resume: bool) -> torch.nn.Module:
        """A fresh student (``init_student``'s weights on a new run: a checkpoint of the same
        architecture, input channels and classes), with global-batch BatchNorm under torchrun
        when ``sync_batchnorm``."""
        cfg = self.cfg
        in_channels = 3 if cfg.student_input == "raw" else self.data.test.pi.shape[1]
        student = build_model(cfg.student, in_channels=in_channels,
                              num_classes=self.data.num_classes)
        if cfg.init_student and not resume:
            init = load_checkpoint(cfg.init_student)
            init.require("init_student", model=cfg.student, in_channels=in_channels,
                         num_classes=self.data.num_classes)
            student.load_state_dict(init.state_dict)
        self.student_norm = self.data.normalizations[cfg.student_input]
        if self.dist.enabled and cfg.sync_batchnorm:
            student = distributed.sync_batchnorm(student, self.device)
        return student

    def build_distiller(self) -> torch.nn.Module:
        """The method around the student and the teachers, on the device."""
        cfg = self.cfg
        distiller = self.method(Network(self.student, cfg.student_input, self.student_norm),
                                self.teachers, self.method.Params(**cfg.method_params))
        distiller = distiller.to(self.device)
        if cfg.channels_last:
            distiller.to(memory_format=torch.channels_last)
        return distiller

    def build_optimizer(self) -> torch.optim.Optimizer:
        """SGD over the method's trainable parameters (implementation per
        :meth:`optimizer_options`)."""
        cfg = self.cfg
        return torch.optim.SGD(list(self.distiller.trainable_parameters()), lr=cfg.lr,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov, **self.optimizer_options())

    def optimizer_options(self) -> dict[str, Any]:
        """How SGD computes its update (``foreach``/``fused``), not what it computes: PyTorch's
        default here."""
        return {}

    def load_latest(self) -> None:
        """Weights, method state, optimizer and loop state from ``latest.pt``, once
        :meth:`check_latest` found that it fits this run."""
        path, ckpt = self.latest_path, load_checkpoint(self.latest_path)
        training = self.check_latest(ckpt)
        self.student.load_state_dict(ckpt.state_dict)
        self.distiller.load_state_dict({**self.distiller.state_dict(),
                                        **training.get("method", {})})
        implementation = [{k: g[k] for k in ("foreach", "fused") if k in g}
                          for g in self.optimizer.param_groups]
        load_optimizer_state(path, self.optimizer, ckpt.optimizer)
        for group, flags in zip(self.optimizer.param_groups, implementation, strict=True):
            group.update(flags)  # this loop's foreach/fused, not those of the loop that saved
        self.state = LoopState.from_payload(training["loop"])
        self.last_good = f"{self.latest_path} ({self.state.position()})"

    def check_latest(self, ckpt: Checkpoint) -> dict[str, Any]:
        """The training state of ``ckpt`` (``latest.pt``; the loader checked its fields'
        types) once it is this run's: the same student, classes and method-state shapes, and a
        loop state (none in a stripped copy); else a one-line TGDError naming the file."""
        ckpt.require("run checkpoint", model=self.cfg.student,
                     in_channels=self.student.in_channels, num_classes=self.data.num_classes)
        training = ckpt.training_state or {}
        if "loop" not in training:
            raise TGDError(f"{ckpt.path}: holds no training state to resume from")
        check_shapes(ckpt.path, "method state", self.distiller.extra_state(),
                     training.get("method", {}))
        return training

    def build_target_cache(self) -> TargetCache | None:
        """The teacher-target cache (None when the teachers must run live), its shapes and
        dtypes learnt from this rank's part of the first batch, under the steps' autocast
        (bf16 teacher outputs with ``amp``); how the teachers are served is kept for
        ``result.json`` (``teacher_targets``)."""
        cfg, data = self.cfg, self.data
        _, probe_idx = data.batch_indices(0, 0)
        probe_idx = probe_idx[self.dist.shard(len(probe_idx))]
        budget = cache_budget(self.device, cfg.teacher_cache_gib)
        with self.amp:
            cache, self.teacher_targets = TargetCache.create(
                self.distiller, len(data.train), data.inputs(data.train, probe_idx.to(self.device)),
                augment=cfg.augment, fixed_batches=cfg.fixed_batches, enabled=cfg.teacher_cache,
                max_bytes=budget)
        return cache

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> None:
        """Every epoch from the state's position to ``cfg.epochs``."""
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch
            epoch_time = self.train_epoch(epoch)
            self.end_epoch(self.epoch_row(epoch, epoch_time), epoch_time)

    def train_epoch(self, epoch: int) -> float:
        """The remaining steps of ``epoch``; returns its training seconds (all stretches)."""
        bar = self.begin_epoch(epoch)
        try:
            batches = self.batches(epoch)
            with contextlib.closing(batches):  # a stop or an error ends the producer too
                for b in batches:
                    self.after_step(b, epoch, self.train_step(b, epoch), bar)
        finally:
            bar.close()
        return self.epoch_seconds()

    def begin_epoch(self, epoch: int) -> tqdm:
        """Training mode, the clock of this stretch of the epoch (resumes split it), and the
        epoch's progress bar."""
        self.distiller.train()
        self.segment_start = time.perf_counter()
        return self.progress_bar(epoch)

    def segment_seconds(self) -> float:
        """Training seconds of the current stretch of the epoch (a run trained in a group of
        students counts its share: :mod:`tgd_core.training.group`)."""
        return time.perf_counter() - self.segment_start

    def epoch_seconds(self) -> float:
        """Training seconds of the epoch in progress (all stretches)."""
        return self.state.epoch_elapsed + self.segment_seconds()

    def progress_bar(self, epoch: int) -> tqdm:
        """The epoch's tqdm bar on stderr (rank 0 only; ``progress=None``: on a terminal)."""
        show = self.show_progress if self.main else False
        return tqdm(total=self.steps, initial=self.state.step,
                    desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step", file=sys.stderr,
                    leave=False, disable=None if show is None else not show)

    def batches(self, epoch: int) -> Iterator[TrainBatch]:
        """This rank's batches of ``epoch`` from the state's step on; on an accelerator with
        on-the-fly PIs the CPU computes the next PIs while the accelerator runs this step (on a
        CPU device the two would compete for the same cores)."""
        batches = self.data.train_batches(epoch, self.state.step, self.dist)
        if self.data.on_the_fly and self.device.type != "cpu":
            batches = prefetch(batches)
        return batches

    def train_step(self, b: TrainBatch, epoch: int) -> StepResult:
        """One SGD step on batch ``b``; its totals over ranks (one reduction). A non-finite
        loss on any rank stops the run as diverged, before the update."""
        cfg = self.cfg
        lr = learning_rate(cfg, epoch + b.step / self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, labels = b.inputs, b.labels
        if cfg.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last)
                      for k, v in inputs.items()}
        with self.amp:
            targets = (self.cache.targets(self.distiller, inputs, b.idx, b.batch)
                       if self.cache is not None else None)
            logits, losses = self.model(inputs, labels, targets)
            # per-sample means weighted by this shard's share of the global batch: DDP's
            # gradient average is then the global mean's gradient (1 on one process)
            share = len(labels) * self.dist.world / b.global_size
            loss = sum(v if k in self.distiller.batch_level_terms else v * share
                       for k, v in losses.items())
        result = self.reduce_step(losses, logits, labels, loss)
        if result.non_finite:
            values = {k: v / result.seen for k, v in result.sums.items()}
            raise self.diverged(f"epoch {epoch + 1}, step {b.step + 1}",
                                f"the loss became non-finite ({values})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return result

    def reduce_step(self, losses: dict[str, torch.Tensor], logits: torch.Tensor,
                    labels: torch.Tensor, loss: torch.Tensor) -> StepResult:
        """Σ term·n per loss term, correct, seen, non-finite losses and stop requests, summed
        over ranks in one reduction."""
        self.terms = self.terms or list(losses)
        n = len(labels)
        totals = self.dist.sum(torch.tensor(
            [float(losses[k].detach()) * n for k in self.terms]
            + [int((logits.argmax(1) == labels).sum()), n, float(not torch.isfinite(loss)),
               float(bool(call_context(self.ctx, "should_stop")))],
            dtype=torch.float64)).tolist()
        k = len(self.terms)
        sums = dict(zip(self.terms, totals[:k], strict=True))
        return StepResult(sums=sums, correct=int(totals[k]), seen=int(totals[k + 1]),
                          non_finite=bool(totals[k + 2]), stop=bool(totals[k + 3]))

    def after_step(self, b: TrainBatch, epoch: int, result: StepResult, bar: tqdm) -> None:
        """Add the step to the state, report progress after every step (a job context
        throttles its store writes, :data:`tgd_core.jobs.context.PROGRESS_WRITE_S`, so a slow
        step still moves the job's progress and ETA within the epoch), and save ``latest.pt``
        every ``checkpoint_every_steps`` or on a stop request (then raise :class:`Stopped`)."""
        state, steps = self.state, self.steps
        state.add_step(result, b.step)
        bar.update(1)
        done = epoch * steps + b.step + 1
        epoch_time = self.epoch_seconds()
        rate = done / max(state.elapsed + epoch_time, 1e-9)  # steps per second
        if self.main:
            call_context(self.ctx, "progress", done / self.total_steps, epoch=epoch + 1,
                         eta=(self.total_steps - done) / rate)
        every = self.cfg.checkpoint_every_steps
        if result.stop or (every and state.step % every == 0 and state.step < steps):
            state.epoch_elapsed, self.segment_start = epoch_time, time.perf_counter()
            self.save_checkpoint(self.latest_path)
            if result.stop:
                raise Stopped(f"stopped at epoch {epoch + 1}, step {b.step + 1}")

    # -- the end of an epoch ------------------------------------------------------------------

    def epoch_row(self, epoch: int, epoch_time: float) -> dict[str, Any]:
        """The epoch's metrics row (test metrics every ``eval_every`` epochs and at the last);
        non-finite metrics stop the run as diverged."""
        state, cfg = self.state, self.cfg
        row = {"epoch": epoch + 1, "lr": learning_rate(cfg, epoch),
               **{f"train_{k}": v / max(state.seen, 1) for k, v in state.sums.items()},
               "train_accuracy": 100.0 * state.correct / max(state.seen, 1),
               "epoch_seconds": epoch_time, "images_per_second": state.seen / epoch_time}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            row.update(self.evaluate())
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise self.diverged(f"end of epoch {epoch + 1}", f"non-finite metrics {bad} "
                                f"({_weights_report(self.student)})")
        return row

    def evaluate(self) -> dict[str, float]:
        """Test accuracy, NLL and ECE of the student."""
        result = evaluate_distiller(self.distiller, self.data, self.dist)
        return {"test_accuracy": result.accuracy, "test_nll": result.nll,
                "test_ece": result.ece}

    def end_epoch(self, row: dict[str, Any], epoch_time: float) -> None:
        """Close the epoch in the state, then write ``latest.pt``, ``best.pt`` (a best epoch)
        and the metrics row, in this order: a row is never ahead of the checkpoints."""
        is_best = self.state.end_epoch(row, epoch_time)
        self.save_checkpoint(self.latest_path, row)
        if is_best:
            self.save_checkpoint(self.best_path, row)
        if self.main:
            append_metrics(self.metrics_path, row)
            call_context(self.ctx, "log", row)

    def save_checkpoint(self, path: Path, row: dict[str, Any] | None = None) -> None:
        """Write a checkpoint of the current state (rank 0), ``row`` as its metrics; a refused
        non-finite one stops the run as diverged. A written ``latest.pt`` is the new last good
        checkpoint."""
        state = self.state
        if self.main:
            try:
                save_checkpoint(path, self.student, input_kind=self.cfg.student_input,
                                normalization=self.student_norm, optimizer=self.optimizer,
                                training_state={"loop": state.to_payload(),
                                                "method": self.distiller.extra_state()},
                                epoch=state.epoch, metrics=row or {},
                                config=self.cfg.model_dump())
            except NonFiniteError as exc:
                raise self.diverged(state.position(), f"{exc.detail} in the weights, buffers "
                                    "or optimizer state") from None
        if path == self.latest_path:
            self.last_good = f"{self.latest_path} ({state.position()})"

    def finish(self) -> dict[str, Any]:
        """The result (best and last epoch rows), written to result.json last."""
        state = self.state
        result = {"best_epoch": state.best_epoch, "best": state.best, "last": state.last,
                  "epochs": self.cfg.epochs, "train_seconds": state.elapsed,
                  "selection": "best = highest test accuracy over the evaluated epochs",
                  **self.result_extras()}
        if self.main:
            atomic_write(self.out / "result.json", json_text(result, indent=2) + "\n",
                         fault="result")
        self.dist.barrier()  # the run's files are complete before any rank moves on
        return result

    def result_extras(self) -> dict[str, Any]:
        """What ``result.json`` says of how the run trained, beyond its metrics (a variant
        adds its own): how the teachers' targets were served."""
        return {"teacher_targets": self.teacher_targets}

    def diverged(self, where: str, what: str) -> TGDError:
        """The one-line error that stops a diverged run."""
        return TGDError(f"training diverged at {where}: {what}; last good checkpoint: "
                        f"{self.last_good}")


def load_teacher_networks(cfg: TrainConfig, paths: dict[str, str], device: torch.device
                          ) -> dict[str, Network]:
    """The teachers ``paths`` (role -> checkpoint) of a run of ``cfg``, each checkpoint read
    once, run as ``cfg.teacher_inference`` (int8: calibrated on the first training images); a
    PI teacher must be fed the PI representation it was trained on. The networks' builds
    (random inits the weights replace, folded or quantised copies) draw from torch's global
    RNG: in :meth:`Trainer.setup` they come between the seed and the student's init."""
    from tgd_core.data.datasets import load_dataset
    from tgd_core.nets.teacher_inference import CALIBRATION_IMAGES, prepare_networks

    teachers = {}
    for role, path in paths.items():
        ckpt = load_checkpoint(path)
        pi = ckpt.config.get("pi")  # None: the authors' checkpoints (paper-mode PIs)
        if ckpt.input_kind == "pi" and pi is not None and pi != cfg.pi:
            raise TGDError(f"teacher {role} ({path}) was trained on PIs {pi}, but "
                           f"this run feeds it {cfg.pi}: set pi to the teacher's")
        teachers[role] = Network.from_checkpoint(ckpt, device)
    return prepare_networks(teachers, cfg.teacher_inference, lambda: load_dataset(
        cfg.dataset, "train", cfg.data_dir, limit=CALIBRATION_IMAGES)[0])


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


def _weights_report(model: torch.nn.Module) -> str:
    """Whether the weights and buffers are finite, for a divergence message."""
    bad, total = non_finite_tensors(model.state_dict().items())
    if not bad:
        return "the weights and buffers are finite"
    return f"{describe_non_finite(bad, total)} in the weights and buffers"
