"""What a runner sees of its job: :class:`JobContext` (folders, progress, metrics, stopping)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tgd_core.jobs.store import Job, JobStore

HEARTBEAT_S = 1.0
PROGRESS_WRITE_S = 0.5


class JobStopped(Exception):  # noqa: N818 (a request, not an error)
    """Raised by a runner that stopped early because :meth:`JobContext.should_stop` said so."""


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


class JobContext:
    """A running attempt of a job, as seen by its runner.

    - ``run_dir``: the job's folder (``<state dir>/runs/<id>``); ``checkpoint_dir`` inside it.
    - ``resume``: True when this attempt continues an earlier one: load the last checkpoint.
    - ``progress(fraction, epoch=None, eta=None, message=None)``: the ETA (seconds) is
      estimated from the rate so far when not given.
    - ``log(metrics)``: append one JSON line to ``metrics.jsonl`` (flushed at once).
    - ``should_stop()``: True once the job was cancelled or its worker is shutting down; save a
      checkpoint and raise :class:`JobStopped` (or any exception, or return).

    A background thread sends heartbeats, writes pending progress and polls for cancellation.
    """

    def __init__(self, store: JobStore, job: Job, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.job_id, self.attempt, self.kind = job.id, job.attempt, job.kind
        self.run_dir, self.checkpoint_dir = job.run_dir, job.checkpoint_dir
        self.resume = job.resume
        self._store, self._heartbeat_s = store, heartbeat_s
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(job.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        self._cancel, self._shutdown, self._lost = (threading.Event(), threading.Event(),
                                                    threading.Event())
        self._done = threading.Event()
        self._plock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one store write at a time, in order
        self._pending: dict[str, Any] = {}
        self._last_write = 0.0
        self._t0, self._f0 = time.monotonic(), job.progress if job.resume else 0.0
        self.stop_seen = False
        self._flush()  # sees a cancel requested before the run started
        self._thread = threading.Thread(target=self._beat, name=f"job-{job.id}-heartbeat",
                                        daemon=True)
        self._thread.start()

    # -- for runners -----------------------------------------------------------------------

    def progress(self, fraction: float, epoch: int | None = None, eta: float | None = None,
                 message: str | None = None) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if eta is None and fraction > self._f0:
            eta = (time.monotonic() - self._t0) * (1.0 - fraction) / (fraction - self._f0)
        update: dict[str, Any] = {"progress": fraction, "eta_s": eta}
        if epoch is not None:
            update["epoch"] = int(epoch)
        if message is not None:
            update["message"] = str(message)
        with self._plock:
            self._pending.update(update)
            due = time.monotonic() - self._last_write >= PROGRESS_WRITE_S or fraction >= 1.0
        if due:
            self._flush()

    def log(self, metrics: dict[str, Any]) -> None:
        line = {"time": time.time(), "attempt": self.attempt, **metrics}
        self._metrics.write(to_json(line) + "\n")
        self._metrics.flush()

    def should_stop(self) -> bool:
        stop = self._cancel.is_set() or self._shutdown.is_set() or self._lost.is_set()
        self.stop_seen = self.stop_seen or stop
        return stop

    # -- for the process running the job ---------------------------------------------------

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def request_shutdown(self) -> None:
        """The worker is stopping: should_stop() turns True; the job ends ``interrupted``."""
        self._shutdown.set()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self._flush()
        self._metrics.close()

    def _flush(self) -> None:
        with self._flush_lock:
            with self._plock:
                pending, self._pending = self._pending, {}
                self._last_write = time.monotonic()
            cancel, owned = self._store.heartbeat(self.job_id, self.attempt, pending)
        if cancel:
            self._cancel.set()
        if not owned:
            self._lost.set()

    def _beat(self) -> None:
        while not self._done.wait(self._heartbeat_s):
            try:
                self._flush()
            except Exception as exc:  # a busy store must not kill the run; retry next beat
                print(f"job {self.job_id}: heartbeat failed: {exc}", file=sys.stderr, flush=True)
