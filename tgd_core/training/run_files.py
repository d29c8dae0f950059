"""A run folder's ``metrics.jsonl`` rows, and the repair of what a crash between two writes
left (see :mod:`tgd_core.training.trainer` for the order of the writes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, json_text
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.training.loop_state import LoopState


def call_context(ctx: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``ctx.name(*args, **kwargs)`` when the context has that member, else None."""
    fn = getattr(ctx, name, None) if ctx is not None else None
    return fn(*args, **kwargs) if fn is not None else None


def metric_rows(path: Path) -> list[dict[str, Any]]:
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


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Add the epoch's row to ``metrics.jsonl``, crash-safely: the file is rewritten
    atomically (a few KB for a 200-epoch run), so it never holds a torn line."""
    old = path.read_text() if path.exists() else ""
    atomic_write(path, old + json_text(row) + "\n", fault="metrics-row")


def repair_after_crash(metrics_path: Path, best_path: Path, state: LoopState,
                       save: Callable[[Path, dict[str, Any] | None], None], ctx: Any) -> None:
    """Make the run's files agree with the state the run starts from (``latest.pt`` when
    resuming, epoch 0 otherwise).

    ``metrics.jsonl`` keeps one row per finished epoch: rows of epochs the run will redo go
    (and a torn line of an older version), and the row of the checkpoint's last epoch — missing
    when the process died between the checkpoint and the row — is rewritten from its training
    state (``last``). ``best.pt`` is rewritten (by ``save(path, row)``) when the process died
    between ``latest.pt`` and it.
    """
    kept = [r for r in metric_rows(metrics_path) if r["epoch"] <= state.epoch]
    last = state.last
    if last is not None and (not kept or kept[-1]["epoch"] < last["epoch"]):
        kept.append(last)
        call_context(ctx, "log", last)
    text = "".join(json_text(r) + "\n" for r in kept)
    if text != (metrics_path.read_text() if metrics_path.exists() else ""):
        atomic_write(metrics_path, text, fault="metrics-row")
    if state.best_epoch == state.epoch and not state.step:
        if not best_path.exists() or load_checkpoint(best_path).epoch != state.epoch:
            save(best_path, state.best)
