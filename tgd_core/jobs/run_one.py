"""Run one claimed job in this process: ``python -m tgd_core.jobs.run_one JOB_ID --state-dir D``.

Started by a worker (:mod:`tgd_core.jobs.worker`) with stdout/stderr going to the job's
``output.log``. Ends the job ``succeeded`` (result in ``result.json``), ``failed`` (error and
traceback), ``cancelled`` (stopped after a cancel request) or ``interrupted`` (stopped by SIGTERM,
i.e. the worker is shutting down). A runner counts as stopped when it raises
:class:`~tgd_core.jobs.JobStopped`, or returns or raises anything after ``ctx.should_stop()``
said True. Exit status 0 unless the job could not be started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

from tgd_core.errors import TGDError
from tgd_core.jobs.context import JobContext, JobStopped, to_json
from tgd_core.jobs.registry import get_kind, parse_config
from tgd_core.jobs.store import Job, JobStore


def _stopped_status(ctx: JobContext) -> str:
    return "cancelled" if ctx.cancel_requested else "interrupted"


def _run(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Call the kind's runner; the keyword arguments of :meth:`JobStore.finish`."""
    try:
        result = get_kind(job.kind).runner()(parse_config(job.kind, job.config), ctx)
        if not isinstance(result, dict):
            raise TypeError(f"{job.kind} runner returned {type(result).__name__}, not a dict")
        text = to_json(result)
    except JobStopped as exc:
        return {"status": _stopped_status(ctx), "message": str(exc) or "stopped on request"}
    except BaseException as exc:  # noqa: BLE001 (every failure is recorded on the job)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        line = f"{type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'}"
        if ctx.stop_seen:  # told to stop, it stopped with its own exception (e.g. the engine's)
            return {"status": _stopped_status(ctx), "message": line, "traceback": tb}
        return {"status": "failed", "error": line, "traceback": tb}
    if ctx.stop_seen:
        return {"status": _stopped_status(ctx), "message": "stopped on request"}
    tmp = job.result_path.with_name(f".result.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, job.result_path)
    return {"status": "succeeded", "result": json.loads(text)}


def run_job(store: JobStore, job_id: int) -> str:
    """Run ``job_id`` (already claimed: status running) here; returns its final status.
    Call from the main thread: SIGTERM asks the runner to stop until the job is recorded."""
    job = store.get(job_id)
    if job.status != "running":
        raise TGDError(f"job {job_id} is {job.status}, not running: claim it first")
    store.set_pid(job.id, job.attempt, os.getpid())
    ctx = JobContext(store, job)
    previous = signal.signal(signal.SIGTERM, lambda *_: ctx.request_shutdown())
    try:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job {job.id} ({job.kind}) attempt "
              f"{job.attempt}{' (resume)' if job.resume else ''}, pid {os.getpid()}", flush=True)
        try:
            outcome = _run(job, ctx)
        finally:
            ctx.close()
        store.finish(job.id, job.attempt, **outcome)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job {job.id} {outcome['status']}", flush=True)
    return outcome["status"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgd_core.jobs.run_one",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("job_id", type=int)
    parser.add_argument("--state-dir", default=None, help="default: $TGD_STATE_DIR")
    args = parser.parse_args(argv)
    try:
        with JobStore(args.state_dir) as store:
            run_job(store, args.job_id)
    except TGDError as exc:
        print(f"run_one: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
