"""``tgd jobs``: submit, watch and control background jobs (see :mod:`tgd_core.jobs`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tgd_core.commands import apply_assignments, parse_json_object, read_json_object
from tgd_core.jobs.store import STATUSES

EPILOG = """\
Jobs live in <state dir>/jobs.sqlite (--state-dir or TGD_STATE_DIR) and run in
'tgd jobs worker' processes. Examples:

    tgd jobs submit pi-cache --set split=test --set representation.mode=paper
    tgd jobs worker --concurrency 2 &
    tgd jobs list
    tgd jobs logs 3 --follow
    tgd jobs cancel 3 && tgd jobs resume 3
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="background jobs: submit, list, logs, cancel, resume, worker",
                       description="Submit, watch and control background jobs.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=None,
                        help="folder of jobs.sqlite and runs/ (default: $TGD_STATE_DIR or ./.tgd)")
    jobs = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        q = jobs.add_parser(name, parents=[common], help=help, description=help)
        q.set_defaults(func=func)
        return q

    q = add("submit", _submit, "queue a job; its config is validated now")
    q.add_argument("kind", help="train, distill, experiment, evaluate, pi-cache, or a plugin's "
                                "(TGD_JOB_PLUGINS); an unknown kind is refused with the list")
    q.add_argument("--config", default=None, help="JSON object, or @file.json")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set one config field (dotted keys for nested ones); the value is read "
                        "as JSON when it parses, else as a string; repeatable")
    q.add_argument("--json", action="store_true", help="print the job as JSON")
    q = add("list", _list, "list jobs, newest first")
    q.add_argument("--status", choices=STATUSES, default=None, help="only jobs with this status")
    q.add_argument("--kind", default=None, help="only jobs of this kind")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q = add("show", _show, "a job's details")
    q.add_argument("id", type=int)
    q.add_argument("--json", action="store_true")
    q = add("logs", _logs, "a job's output log (or its metrics)")
    q.add_argument("id", type=int)
    q.add_argument("--follow", "-f", action="store_true", help="keep printing until it finishes")
    q.add_argument("--metrics", action="store_true", help="print metrics.jsonl instead")
    q = add("cancel", _cancel, "cancel a queued or running job")
    q.add_argument("id", type=int)
    q.add_argument("--timeout", type=float, default=30.0,
                   help="seconds the job gets to stop at a step boundary before it is killed")
    q = add("resume", _resume, "queue a failed/cancelled/interrupted job again from its checkpoint")
    q.add_argument("id", type=int)
    q = add("retry", _retry, "queue a finished job again from scratch (its run folder is emptied)")
    q.add_argument("id", type=int)
    q = add("delete", _delete, "remove a job that is not running")
    q.add_argument("id", type=int)
    q.add_argument("--files", action="store_true", help="also delete its run folder")
    q = add("worker", _worker, "run jobs: claim queued jobs, each in its own process")
    from tgd_core.jobs.worker import add_worker_arguments

    add_worker_arguments(q)


def _store(args: argparse.Namespace):
    from tgd_core.jobs.store import JobStore

    return JobStore(args.state_dir)


def parse_config_args(config: str | None, assignments: list[str]) -> dict[str, Any]:
    """``--config JSON|@file`` then each ``--set KEY=VALUE`` on top."""
    data: dict[str, Any] = {}
    if config:
        data = (read_json_object(config[1:], "--config file") if config.startswith("@")
                else parse_json_object(config, "--config"))
    return apply_assignments(data, assignments)


def _submit(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.submit(args.kind, parse_config_args(args.config, args.set))
    print(json.dumps(job.to_dict()) if args.json else f"job {job.id} queued ({job.kind})")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        store.reconcile()
        jobs = store.list(status=args.status, kind=args.kind)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs]))
        return 0
    print(f"{'id':>5}  {'kind':<11}{'status':<12}{'progress':>8}{'epoch':>7}{'eta':>10}  "
          f"{'created':<17} message")
    for j in jobs:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at))
        epoch = "" if j.epoch is None else j.epoch
        print(f"{j.id:>5}  {j.kind:<11}{j.status_text:<12}{j.progress_text:>8}{epoch:>7}"
              f"{j.eta_text:>10}  {created:<17} "
              f"{j.damage or j.error or j.message or ''}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        store.reconcile()
        job = store.get(args.id)
    d = job.to_dict()
    if args.json:
        print(json.dumps(d))
        return 0
    long = ("config", "result", "traceback", "damaged")
    for key, value in d.items():
        if key not in long and value is not None:
            print(f"{key + ':':<18}{value}")
    if job.damage:
        print(f"{'damaged:':<18}{job.damage}")
    print(f"{'config:':<18}{job.config_text}")
    if job.result is not None:
        print(f"{'result:':<18}{json.dumps(job.result)}")
    if job.traceback:
        print("traceback:\n" + job.traceback.rstrip())
    return 0


def _logs(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.get(args.id)
        path = job.metrics_path if args.metrics else job.log_path
        pos = 0
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                pos += len(chunk)
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            if not args.follow:
                return 0
            store.reconcile()
            if store.get(args.id).status not in ("queued", "running") and (
                    not path.exists() or path.stat().st_size == pos):
                return 0
            time.sleep(0.5)


def _cancel(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.cancel(args.id, timeout=args.timeout)
    if job.status == "cancelled":
        print(f"job {job.id} cancelled")
    else:
        print(f"job {job.id}: stop requested; killed in {args.timeout:g} s if still running")
    return 0


def _resume(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.resume(args.id)
    print(f"job {job.id} queued again (attempt {job.attempt}, resumes from its checkpoint)")
    return 0


def _retry(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.retry(args.id)
    print(f"job {job.id} queued again (attempt {job.attempt}, from scratch)")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _store(args) as store:
        job = store.get(args.id)
        store.delete(args.id, delete_files=args.files)
    print(f"job {args.id} deleted" + (f" with {job.run_dir}" if args.files else ""))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from tgd_core.jobs.worker import run_worker

    return run_worker(args)
