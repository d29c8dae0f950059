"""A group of student runs trained in one process on shared batches (``tgd experiment
--group-students``).

Batches are deterministic functions of (seed, epoch, step) (:mod:`.data`), so runs whose data
settings agree (:data:`tgd_core.experiments.plan.SHARED_BATCH_FIELDS`: seed, images,
augmentation, batch size, epochs, PI representation, ...) see identical batches — e.g. the
scratch, KD, MTKD and TGD students of one seed of a recipe. A :class:`StudentGroup` trains such
runs side by side: each step's batch (with its on-the-fly PIs) is made once, every student
steps on it, and each teacher — one module for the group per checkpoint and
``teacher_inference`` — runs its forward once per step (a :class:`SharedTeacher` memoises its
outputs for the batch it last saw, keyed by the batch's (epoch, step)). With augmentation the
teachers and the PIs are most of a distillation step on a CPU (docs/benchmarks.md), so a
group of N students costs little more than its N students' own forward and backward passes.

Exact: every member is a :class:`~.trainer.Trainer` (:class:`GroupMember` changes only where
its teachers and data come from — after the random draws its own teachers' loading makes —,
its share of the clock, and where its stop decision comes from), stepping on the very batch
and teacher outputs it would compute alone, so its weights, checkpoints, metrics and
``result.json`` are those of the run trained alone, bit for bit on a CPU
(tests/test_group_training.py), and it resumes alone or in a group alike. Timings are the
exception: a member's seconds are its equal share of the group's wall time.

A stop request of any member's context stops the whole group after the same step (each run
saves ``latest.pt``, then :class:`~.stopping.Stopped` is raised); a member that fails (e.g.
diverges) leaves the group with the error it would raise alone, the others train on, and the
first failure is raised once they have finished. Members must start from the same position
(:func:`groups_by_position` splits runs by it); one process, not under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tgd_core.core import distributed
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import folder_lock
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.nets.network import Network
from tgd_core.training.config import TrainConfig
from tgd_core.training.data import TrainBatch, TrainData
from tgd_core.training.loop_state import LoopState
from tgd_core.training.run_files import call_context
from tgd_core.training.trainer import (
    RunContext,
    Stopped,
    Trainer,
    load_teacher_networks,
    trainer_class,
)

BatchId = tuple[int, int]  # (epoch, step): what a batch is a function of, beside the config


class SharedTeacher(nn.Module):
    """A frozen teacher shared by the students of a group: within a batch set by
    :meth:`start_batch` it runs once, with features, and serves every later call of that
    batch from the stored outputs (logits alone when features are not asked for: the teacher
    interface computes the logits the same way either way — ``WideResNet.forward``,
    ``GraphTeacher``). Outside a batch (``None``) it is the teacher itself."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch: BatchId | None = None
        self.outputs: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self.forwards = 0  # forward passes run (the memo's test and benchmark count them)

    def start_batch(self, batch: BatchId | None) -> None:
        """Forget the stored outputs; the calls until the next ``start_batch`` all read the
        batch ``batch`` (None: no memo)."""
        self.batch, self.outputs = batch, None

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if self.batch is None:
            self.forwards += 1
            return self.model(x, return_features=return_features)
        if self.outputs is None:
            self.forwards += 1
            self.outputs = self.model(x, return_features=True)
        logits, features = self.outputs
        return (logits, list(features)) if return_features else logits


class MemberContext:
    """The context a group member's loop sees: progress and metrics go to the run's own
    context; the stop decision is the group's, taken once per step."""

    def __init__(self, ctx: RunContext | None, group: StudentGroup) -> None:
        self.ctx, self.group = ctx, group

    def progress(self, fraction: float, epoch: int | None = None, eta: float | None = None,
                 message: str | None = None) -> None:
        call_context(self.ctx, "progress", fraction, epoch=epoch, eta=eta, message=message)

    def log(self, metrics: dict[str, Any]) -> None:
        call_context(self.ctx, "log", metrics)

    def should_stop(self) -> bool:
        return self.group.stop


class GroupMember(Trainer):
    """One run of a :class:`StudentGroup`: the standard loop with the group's teachers and
    data, its share of the group's clock and the group's stop decision."""

    def __init__(self, cfg: TrainConfig, group: StudentGroup, ctx: RunContext | None,
                 progress: bool | None) -> None:
        super().__init__(cfg, ctx=MemberContext(ctx, group), progress=progress)
        self.group = group

    def load_teachers(self) -> dict[str, Network]:
        """The group's shared teachers. The member first loads its own, as the run alone
        does, and drops them: loading draws from torch's global RNG between the seed and the
        student's init (:func:`~.trainer.load_teacher_networks`), so this keeps the student's
        init that of the run alone (cheap but for int8, whose calibration it repeats)."""
        load_teacher_networks(self.cfg, self.cfg.teachers, self.device)
        return self.group.teachers_of(self.cfg)

    def load_data(self) -> TrainData:
        return self.group.data

    def segment_seconds(self) -> float:
        """The member's equal share of the group's time in this stretch."""
        return super().segment_seconds() / max(len(self.group.members), 1)


class StudentGroup:
    """Runs with equal batch keys (:func:`tgd_core.experiments.plan.batch_key`) trained in one
    process on shared batches (see the module doc); ``ctxs``: each run's context."""

    def __init__(self, cfgs: list[TrainConfig], *, ctxs: list[RunContext | None] | None = None,
                 progress: bool | None = None) -> None:
        from tgd_core.experiments.plan import batch_key

        if not cfgs:
            raise TGDError("a group of students needs at least one run")
        if len({batch_key(cfg) for cfg in cfgs}) > 1:
            raise TGDError("a group's runs must share their batches: they differ in the "
                           "data, seed, epochs or placement settings")
        if len({Path(cfg.out_dir).resolve() for cfg in cfgs}) < len(cfgs):
            raise TGDError("a group's runs need one output folder each")
        self.cfgs, self.progress = cfgs, progress
        self.ctxs = ctxs if ctxs is not None else [None] * len(cfgs)
        self.members: list[GroupMember] = []
        self.teachers: dict[tuple[str, str], Network] = {}  # (checkpoint, inference) -> net
        self.stop = False
        self.failures: list[BaseException] = []

    def run(self, resume: list[bool]) -> list[dict[str, Any]]:
        """Set every run up (``resume[i]``: continue its ``latest.pt``), train them together,
        write their results; each run's result (see :meth:`finish` on failures). Every
        member's folder is locked meanwhile (:func:`folder_lock`)."""
        with contextlib.ExitStack() as locks:
            for cfg in self.cfgs:
                locks.enter_context(folder_lock(cfg.out_dir, "training this run"))
            self.setup(resume)
            self.train()
            return self.finish()

    # -- setup ------------------------------------------------------------------------------

    def setup(self, resume: list[bool]) -> None:
        """The teachers (once each), the data (once, with every input kind a member needs),
        then each member's own setup; the members must stand at one position."""
        lead = self.cfgs[0]
        dist, self.device = distributed.setup(lead.device)
        if dist.enabled:
            raise TGDError("a group of students trains in one process, not under torchrun")
        if lead.threads:
            torch.set_num_threads(lead.threads)
        for cfg in self.cfgs:
            for path in cfg.teachers.values():
                self.shared_teacher(cfg, path)
        kinds = {cfg.student_input for cfg in self.cfgs}
        kinds |= {net.input_kind for net in self.teachers.values()}
        self.data = TrainData(lead, kinds, self.device)
        self.members = [GroupMember(cfg, self, ctx, self.progress)
                        for cfg, ctx in zip(self.cfgs, self.ctxs, strict=True)]
        for member, again in zip(self.members, resume, strict=True):
            member.setup(again)
        positions = {m.state.position() for m in self.members}
        if len(positions) > 1:
            raise TGDError(f"a group's runs must stand at one position, not {sorted(positions)}"
                           ": train them apart")

    def shared_teacher(self, cfg: TrainConfig, path: str) -> Network:
        """The group's teacher of checkpoint ``path`` run as ``cfg.teacher_inference``,
        loaded (:func:`~.trainer.load_teacher_networks`) on first use."""
        key = (str(Path(path).resolve()), cfg.teacher_inference)
        if key not in self.teachers:
            net = load_teacher_networks(cfg, {path: path}, self.device)[path]
            self.teachers[key] = dataclasses.replace(net, model=SharedTeacher(net.model))
        return self.teachers[key]

    def teachers_of(self, cfg: TrainConfig) -> dict[str, Network]:
        """A member's teachers by role: the group's shared ones."""
        return {role: self.shared_teacher(cfg, path) for role, path in cfg.teachers.items()}

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> None:
        """Every remaining epoch of the members still training."""
        while self.members and self.members[0].state.epoch < self.members[0].cfg.epochs:
            epoch = self.members[0].state.epoch
            for m, seconds in self.train_epoch(epoch).items():
                self.attempt(m, lambda m=m, t=seconds, e=epoch: m.end_epoch(m.epoch_row(e, t), t))

    def train_epoch(self, epoch: int) -> dict[GroupMember, float]:
        """The remaining steps of ``epoch`` for every member; each member's seconds."""
        bars = {m: m.begin_epoch(epoch) for m in self.members}
        try:
            batches = self.members[0].batches(epoch)
            with contextlib.closing(batches):
                for b in batches:
                    self.train_step(b, epoch, bars)
                    if not self.members:
                        break
        finally:
            for bar in bars.values():
                bar.close()
        return {m: m.epoch_seconds() for m in self.members}

    def train_step(self, b: TrainBatch, epoch: int, bars: dict) -> None:
        """Every member's step on batch ``b``, the teachers' outputs computed once; the stop
        decision polled once from every member's context (any one stops the group)."""
        self.stop = any([bool(call_context(m.ctx.ctx, "should_stop")) for m in self.members])
        for teacher in self.shared_modules():
            teacher.start_batch((epoch, b.step))
        stopped = None
        try:
            for m in list(self.members):
                try:
                    self.attempt(m, lambda m=m: m.after_step(b, epoch, m.train_step(b, epoch),
                                                             bars[m]))
                except Stopped as exc:
                    stopped = stopped or exc
        finally:
            for teacher in self.shared_modules():
                teacher.start_batch(None)
        if stopped is not None:
            raise stopped

    def attempt(self, member: GroupMember, action) -> None:
        """``action()`` for ``member``; an error (not a stop) takes the member out of the
        group, to be raised by :meth:`finish`."""
        try:
            action()
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 — raised by finish, once the others are done
            self.failures.append(exc)
            self.members.remove(member)

    def shared_modules(self) -> list[SharedTeacher]:
        return [net.model for net in self.teachers.values()]

    def finish(self) -> list[dict[str, Any]]:
        """Each remaining member's result (written to its result.json); then the first
        failure of a member, if one failed."""
        results = [m.finish() for m in self.members]
        if self.failures:
            raise self.failures[0]
        return results


def train_group(cfgs: list[TrainConfig], *, resume: list[bool],
                ctxs: list[RunContext | None] | None = None, progress: bool | None = None
                ) -> list[dict[str, Any]]:
    """Train ``cfgs`` as one :class:`StudentGroup`; their results."""
    return StudentGroup(cfgs, ctxs=ctxs, progress=progress).run(resume)


def run_position(cfg: TrainConfig) -> tuple[int, int]:
    """(finished epochs, finished steps of the epoch in progress) of a run, from its
    ``latest.pt``; (0, 0) for a new run."""
    path = Path(cfg.out_dir) / "latest.pt"
    if not path.exists():
        return 0, 0
    state = LoopState.from_payload((load_checkpoint(path).training_state or {}).get("loop", {}))
    return state.epoch, state.step


def groups_by_position(runs: list[tuple[str, TrainConfig]]
                       ) -> list[list[tuple[str, TrainConfig]]]:
    """``runs`` (sharing batches) split into groups that can train together: those at one
    position (:func:`run_position`) on the standard loop, in order of first appearance; a run
    on another loop (the accelerator's fast engine) alone."""
    groups: dict[Any, list[tuple[str, TrainConfig]]] = {}
    for label, cfg in runs:
        together = trainer_class(cfg) is Trainer
        key = run_position(cfg) if together else ("alone", label)
        groups.setdefault(key, []).append((label, cfg))
    return list(groups.values())
