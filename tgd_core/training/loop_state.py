"""The training loop's position and running totals (:class:`LoopState`) and what one step adds
to them (:class:`StepResult`).

A :class:`LoopState` is also the ``training_state["loop"]`` of every checkpoint the loop writes:
:meth:`LoopState.to_payload` and :meth:`LoopState.from_payload` convert it to and from that plain
dict (the keys are the field names; checkpoints of every version of the loop share them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class StepResult:
    """One training step's totals over every rank (one reduction a step)."""

    sums: dict[str, float]  # Σ term·n per loss term, in the order of the method's terms
    correct: int  # training samples classified correctly
    seen: int  # training samples of the step
    non_finite: bool  # a rank's loss was NaN or inf
    stop: bool  # a rank's context asked the run to stop


@dataclass
class LoopState:
    """Where the loop is and what the epoch in progress has summed so far, plus the run's
    best and last epoch rows: everything a resume needs beside the weights and optimizer."""

    epoch: int = 0  # finished epochs
    step: int = 0  # finished steps of the epoch in progress
    sums: dict[str, float] = field(default_factory=dict)  # Σ term·n of the epoch in progress
    correct: int = 0
    seen: int = 0
    elapsed: float = 0.0  # training seconds of the finished epochs
    epoch_elapsed: float = 0.0  # training seconds of the epoch in progress, up to `step`
    best_accuracy: float = -1.0
    best_epoch: int | None = None
    best: dict[str, Any] | None = None  # the metrics row of the best epoch
    last: dict[str, Any] | None = None  # the metrics row of the last finished epoch

    def to_payload(self) -> dict[str, Any]:
        """The checkpoint's ``training_state["loop"]``: plain data, one key per field."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"sums": dict(self.sums)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> LoopState:
        """The state a checkpoint's ``training_state["loop"]`` holds (keys it lacks keep their
        start values; keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in payload.items() if k in known})
        state.sums = dict(state.sums)
        return state

    def position(self) -> str:
        """Where the loop is: ``"end of epoch E"``, ``"epoch E, step S"`` or ``"start"``."""
        if self.step:
            return f"epoch {self.epoch + 1}, step {self.step}"
        return f"end of epoch {self.epoch}" if self.epoch else "start"

    def add_step(self, result: StepResult, step: int) -> None:
        """Add a finished step's totals (``step``: its index in the epoch)."""
        for k, v in result.sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.correct += result.correct
        self.seen += result.seen
        self.step = step + 1

    def end_epoch(self, row: dict[str, Any], epoch_time: float) -> bool:
        """Close the epoch of metrics row ``row`` (``epoch_time`` seconds of training); True
        when its test accuracy is the best so far."""
        self.epoch, self.step, self.sums, self.correct, self.seen = row["epoch"], 0, {}, 0, 0
        self.epoch_elapsed, self.elapsed, self.last = 0.0, self.elapsed + epoch_time, row
        is_best = row.get("test_accuracy", -1.0) > self.best_accuracy
        if is_best:
            self.best_accuracy, self.best_epoch, self.best = row["test_accuracy"], row["epoch"], row
        return is_best
