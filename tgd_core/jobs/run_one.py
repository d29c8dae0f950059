"""Run one claimed job in this process: ``python -m tgd_core.jobs.run_one JOB_ID --state-dir D``.

Started by a worker (:mod:`tgd_core.jobs.worker`) with stdout/stderr going to the job's
``output.log``. Ends the job ``succeeded`` (result in ``result.json``), ``failed`` (a one-line
error and the traceback), ``cancelled`` (stopped after a cancel request) or ``interrupted``
(stopped by SIGTERM, i.e. the worker is shutting down, or because the worker died). A runner
counts as stopped when it raises :class:`~tgd_core.jobs.JobStopped`, or returns or raises
anything after ``ctx.should_stop()`` said True. Exit status 0 unless the job could not be started.

The job runs in its own session, so it survives its worker. ``--supervisor PID`` (the worker
passes its pid) makes it watch that process: once it is no longer this process's parent (it
died, even by SIGKILL, and this process was re-parented) the job is asked to stop as on SIGTERM
and ends ``interrupted`` with a checkpoint, resumable; a runner that has not stopped
``--grace`` seconds later is killed, as the worker would have killed it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write
from tgd_core.jobs.context import JobContext, JobStopped, to_json
from tgd_core.jobs.registry import get_kind, parse_config
from tgd_core.jobs.store import Job, JobStore

WATCH_S = 0.5  # how often a job checks that its worker is alive
DEFAULT_GRACE_S = 30.0  # the worker's default shutdown timeout
MAX_ERROR_CHARS = 500


def error_line(exc: BaseException) -> str:
    """The one line a failed job records as its error: ``Type: message`` with whitespace
    collapsed and at most :data:`MAX_ERROR_CHARS` characters (the full traceback is kept
    apart). A :class:`TGDError` is a message written for the user and is kept without its type."""
    text = " ".join(str(exc).split()) or "(no message)"
    if not isinstance(exc, TGDError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class SupervisorWatch:
    """A thread that notices when this process's worker is gone (see the module doc)."""

    def __init__(self, store: JobStore, job: Job, ctx: JobContext, supervisor: int,
                 grace: float) -> None:
        self.store, self.job, self.ctx = store, job, ctx
        self.supervisor, self.grace = supervisor, grace
        self.orphaned_at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"job-{job.id}-watch",
                                        daemon=True)
        self._thread.start()

    @property
    def reason(self) -> str | None:
        """Why the job was stopped, once its worker is gone."""
        if self.orphaned_at is None:
            return None
        return f"interrupted: its worker (pid {self.supervisor}) died"

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        """Check at once (the worker may have died before this process started), then every
        :data:`WATCH_S` seconds until the job is over."""
        while True:
            if os.getppid() != self.supervisor:
                now = time.monotonic()
                if self.orphaned_at is None:
                    self.orphaned_at = now
                    _say(f"job {self.job.id}: its worker (pid {self.supervisor}) is gone; "
                         "stopping at the next step")
                    self.ctx.request_shutdown()
                elif now - self.orphaned_at >= self.grace:
                    self._kill()
                    return
            if self._done.wait(WATCH_S):
                return

    def _kill(self) -> None:
        """The runner ignored the stop request: record the job and kill this process group."""
        status = "cancelled" if self.ctx.cancel_requested else "interrupted"
        error = (f"killed: did not stop within {self.grace:g} s after its worker "
                 f"(pid {self.supervisor}) died")
        _say(f"job {self.job.id}: {error}")
        try:
            self.store.finish(self.job.id, self.job.attempt, status, error=error)
        except Exception as exc:  # noqa: BLE001 (a new worker's reconcile records it then)
            _say(f"job {self.job.id}: could not record the kill: {exc}")
        if os.getpgrp() == os.getpid():  # our own session (as a worker starts us): children too
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def _stopped_status(ctx: JobContext) -> str:
    return "cancelled" if ctx.cancel_requested else "interrupted"


def _run(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Validate the stored config and call the kind's runner; the keyword arguments of
    :meth:`JobStore.finish`."""
    if "config" in job.damaged:  # unreadable in the store: nothing to validate or run
        return {"status": "failed", "error": job.damage}
    try:
        runner, config = get_kind(job.kind).runner(), parse_config(job.kind, job.config)
    except TGDError as exc:  # a stored config that no longer validates, a kind now unknown
        return {"status": "failed", "error": error_line(exc)}
    try:
        result = runner(config, ctx)
        if not isinstance(result, dict):
            raise TypeError(f"{job.kind} runner returned {type(result).__name__}, not a dict")
        text = to_json(result)
    except JobStopped as exc:
        return {"status": _stopped_status(ctx), "message": str(exc) or "stopped on request"}
    except BaseException as exc:  # noqa: BLE001 (every failure is recorded on the job)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        if ctx.stop_seen:  # told to stop, it stopped with its own exception (e.g. the engine's)
            return {"status": _stopped_status(ctx), "message": error_line(exc), "traceback": tb}
        return {"status": "failed", "error": error_line(exc), "traceback": tb}
    if ctx.stop_seen:
        return {"status": _stopped_status(ctx), "message": "stopped on request"}
    atomic_write(job.result_path, text + "\n", fault="jobs.result")
    return {"status": "succeeded", "result": json.loads(text)}


def run_job(store: JobStore, job_id: int, supervisor: int | None = None,
            grace: float = DEFAULT_GRACE_S) -> str:
    """Run ``job_id`` (already claimed: status running) here; returns its final status.
    Call from the main thread: SIGTERM asks the runner to stop until the job is recorded.
    With ``supervisor``, the job stops when that process is no longer this one's parent."""
    job = store.get(job_id)
    if job.status != "running":
        raise TGDError(f"job {job_id} is {job.status}, not running: claim it first")
    store.set_pid(job.id, job.attempt, os.getpid())
    ctx = JobContext(store, job)
    watch = None if supervisor is None else SupervisorWatch(store, job, ctx, supervisor, grace)
    previous = signal.signal(signal.SIGTERM, lambda *_: ctx.request_shutdown())
    try:
        _say(f"job {job.id} ({job.kind}) attempt {job.attempt}"
             f"{' (resume)' if job.resume else ''}, pid {os.getpid()}", sys.stdout)
        try:
            outcome = _run(job, ctx)
        finally:
            if watch is not None:
                watch.close()
            ctx.close()
        if watch is not None and watch.reason and outcome["status"] == "interrupted":
            outcome["error"] = watch.reason
        store.finish(job.id, job.attempt, **outcome)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _say(f"job {job.id} {outcome['status']}", sys.stdout)
    return outcome["status"]


def _say(text: str, stream=None) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}", file=stream or sys.stderr,
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgd_core.jobs.run_one",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("job_id", type=int)
    parser.add_argument("--state-dir", default=None, help="default: $TGD_STATE_DIR")
    parser.add_argument("--supervisor", type=int, default=None,
                        help="pid of the worker: stop the job if it is no longer the parent")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_S,
                        help="seconds a job whose worker died may take to stop before it is "
                             "killed")
    args = parser.parse_args(argv)
    try:
        with JobStore(args.state_dir) as store:
            run_job(store, args.job_id, args.supervisor, args.grace)
    except TGDError as exc:
        print(f"run_one: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
