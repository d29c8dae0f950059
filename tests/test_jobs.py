"""Background jobs: store rules, worker processes, cancel/kill/resume, concurrent writers, CLI.

The test kind ``test-counter`` (below) is a deterministic step loop with a JSON checkpoint after
every step; ``test-train-held`` is the real ``train`` runner whose first progress report waits
for a release file. Worker children load them through ``TGD_JOB_PLUGINS=test_jobs``.

No test sleeps for a guessed time or bounds how fast something happens: they poll for the state
they need, with generous limits (:data:`SLOW`) that only catch hangs, so that they pass on a
loaded machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.waiting import SLOW, wait_for
from tgd_core.core.errors import TGDError
from tgd_core.jobs import JobContext, JobStopped, JobStore, register_kind
from tgd_core.jobs.store import CANCELLABLE, RESUMABLE, SCHEMA_VERSION, STATUSES, pid_alive

TESTS = Path(__file__).resolve().parent


class CounterJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(ge=1)
    step_time: float = Field(0.0, ge=0)
    fail_at: int | None = None
    ignore_stop: bool = False
    own_stop_error: bool = False
    hold_at: int | None = Field(None, description="before this step, wait until the file "
                                "run_dir/release exists (or the job is asked to stop)")


class CounterStopped(Exception):
    """A runner's own way of stopping (as the training engine's ``Stopped``)."""


def _record(ctx: JobContext, what: str) -> None:
    """One line ``WHAT TIME PID`` in the job's executions.txt."""
    with open(ctx.run_dir / "executions.txt", "a") as f:
        f.write(f"{what} {time.time()} {os.getpid()}\n")


def _stop_if_asked(config: CounterJob, ctx: JobContext, step: int) -> None:
    if ctx.should_stop() and not config.ignore_stop:
        raise (CounterStopped if config.own_stop_error else JobStopped)(f"stopped at step {step}")


def _hold(config: CounterJob, ctx: JobContext, step: int) -> None:
    """Wait before ``hold_at`` until released (or stopped): the job is surely running there."""
    while not (ctx.run_dir / "release").exists():
        _stop_if_asked(config, ctx, step)
        time.sleep(0.02)


def run_counter(config: CounterJob, ctx: JobContext) -> dict[str, Any]:
    """Sum of step² over the steps, one step at a time; resumes from its checkpoint. A second
    process running the job at the same time is recorded as an ``overlap`` execution."""
    ckpt = ctx.checkpoint_dir / "counter.json"
    lock = open(ctx.run_dir / "runner.lock", "w")  # noqa: SIM115 (held while it runs)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _record(ctx, "overlap")
    _record(ctx, "start")
    state = json.loads(ckpt.read_text()) if ctx.resume and ckpt.exists() else {"step": 0,
                                                                                 "total": 0}
    start = state["step"]
    for step in range(start, config.steps):
        _stop_if_asked(config, ctx, step)
        if step == config.hold_at:
            _hold(config, ctx, step)
        if step == config.fail_at:
            raise RuntimeError(f"boom at step {step}")
        time.sleep(config.step_time)
        state = {"step": step + 1, "total": state["total"] + step * step}
        ctx.log({"step": step, "total": state["total"]})  # before the checkpoint: no gaps
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, ckpt)
        ctx.progress((step + 1) / config.steps, epoch=step)
    print(f"counter done: {state['total']}")
    _record(ctx, "end")
    return {"total": state["total"], "resumed_from": start}


class HeldContext:
    """A job context whose first progress report waits until the file ``run_dir/release``
    exists or the job is asked to stop: a test sees the job running after its first step."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx, self._held = ctx, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def progress(self, *args: Any, **kwargs: Any) -> None:
        self._ctx.progress(*args, **kwargs)
        if not self._held:
            self._held = True
            while not (self._ctx.run_dir / "release").exists() and not self._ctx.should_stop():
                time.sleep(0.02)


def run_held_training(config: Any, ctx: JobContext) -> dict[str, Any]:
    """The ``train`` runner with a :class:`HeldContext`."""
    from tgd_core.training.jobs import run_train_job

    return run_train_job(config, HeldContext(ctx))


class FreeJob(BaseModel):
    """A config that takes any JSON object, as a plugin's may."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(default_factory=dict)


def run_free(config: FreeJob, ctx: JobContext) -> dict[str, Any]:
    return {"keys": sorted(config.data)}


register_kind("test-counter", CounterJob, run_counter, replace=True)
register_kind("test-free", FreeJob, run_free, replace=True)
register_kind("test-train-held", "tgd_core.training.config:TrainConfig", run_held_training,
              replace=True)
if os.environ.get("TEST_JOBS_PART_ROWS"):  # set for worker children only: tiny PI cache parts
    from tgd_core.topology import cache

    cache.PART_ROWS = int(os.environ["TEST_JOBS_PART_ROWS"])


def expected_total(steps: int) -> int:
    return sum(i * i for i in range(steps))


def _kill_group(pid: int | None) -> None:
    if pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    """An empty store in tmp_path; job processes it recorded are killed afterwards."""
    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TGD_JOB_PLUGINS", Path(__file__).stem)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))
    s = JobStore()
    yield s
    for job in s.list(status="running"):
        _kill_group(job.pid)
    s.close()


@pytest.fixture
def start_worker(store: JobStore, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m tgd_core.jobs.worker ARGS`` on the store (with ``env`` added to the
    environment); all are killed afterwards."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tgd_core.jobs.worker", "--poll", "0.2", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}))
        log.close()
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for pid in store.live_workers():
        _kill_group(pid)


def finished(store: JobStore, job_id: int, status: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        job = store.get(job_id)
        return job.finished and (status is None or job.status == status)
    return check


def executions(store: JobStore, job_id: int) -> list[tuple[str, float, int]]:
    lines = (store.get(job_id).run_dir / "executions.txt").read_text().split("\n")
    return [(w, float(t), int(p)) for w, t, p in (line.split() for line in lines if line)]


# -- store rules -------------------------------------------------------------------------------

def test_schema_is_versioned_and_in_wal_mode(store: JobStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION >= 1
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db_path == store.state_dir / "jobs.sqlite"
    assert JobStore(store.db_path).state_dir == store.state_dir  # a .sqlite path works too


def test_migrations_apply_in_order_and_newer_stores_are_refused(tmp_path: Path) -> None:
    from tgd_core.jobs import store as store_module

    with sqlite3.connect(tmp_path / "old.sqlite") as conn:  # a version-1 store with one job
        for sql in store_module.MIGRATIONS[0]:
            conn.execute(sql)
        conn.execute("INSERT INTO jobs (kind, config, status, created_at) "
                     "VALUES ('test-counter', '{}', 'queued', 0)")
        conn.execute("PRAGMA user_version = 1")
    added = ["ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"]
    migrations = [*store_module.MIGRATIONS, added]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module, "MIGRATIONS", migrations)
        mp.setattr(store_module, "SCHEMA_VERSION", len(migrations))
        with JobStore(tmp_path / "old.sqlite") as s:
            assert s.schema_version() == len(migrations)
            assert [tuple(r) for r in s._query("SELECT id, status, priority FROM jobs")] == [
                (1, "queued", 0)]
    with pytest.raises(TGDError, match="newer than this program's"):
        JobStore(tmp_path / "old.sqlite")


def test_malformed_config_is_rejected_naming_the_field(store: JobStore, capsys,
                                                      tmp_path: Path) -> None:
    from tgd_core import cli

    checkpoint = tmp_path / "x.pt"
    checkpoint.write_bytes(b"read when the job runs")

    with pytest.raises(TGDError, match=r"test-counter config: steps: .*integer.*'many'"):
        store.submit("test-counter", {"steps": "many"})
    with pytest.raises(TGDError, match="steps: Field required"):
        store.submit("test-counter", {})
    with pytest.raises(TGDError, match="stpe_time: Extra inputs are not permitted"):
        store.submit("test-counter", {"steps": 2, "stpe_time": 1})
    with pytest.raises(TGDError, match="pi-cache config: split: .*unknown split 'validation'"):
        store.submit("pi-cache", {"split": "validation"})
    with pytest.raises(TGDError, match="pi-cache config: representation: .*bad PI representation"):
        store.submit("pi-cache", {"representation": {"mode": "paper", "spred": 0.1}})
    with pytest.raises(TGDError, match="evaluate config: checkpoint: Field required"):
        store.submit("evaluate", {})
    with pytest.raises(TGDError, match="corruption and severity go together"):
        store.submit("evaluate", {"checkpoint": str(checkpoint), "corruption": "contrast"})
    with pytest.raises(TGDError, match="train config: epochs"):
        store.submit("train", {"epochs": 0})
    with pytest.raises(TGDError, match="unknown job kind 'nope'"):
        store.submit("nope", {})
    assert store.list() == []
    assert cli.main(["jobs", "submit", "test-counter", "--set", "steps=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "steps: Input should be greater than or equal to 1" in err
    with pytest.raises(SystemExit):  # the help names every built-in kind
        cli.main(["jobs", "submit", "--help"])
    from tgd_core.jobs.registry import KINDS

    help_text = " ".join(capsys.readouterr().out.split())
    assert all(kind in help_text for kind in KINDS)


def test_submit_normalises_config_and_cli_set_nests(store: JobStore, capsys) -> None:
    from tgd_core import cli

    job = store.submit("test-counter", {"steps": "3"})
    assert job.config == {"steps": 3, "step_time": 0.0, "fail_at": None, "ignore_stop": False,
                          "own_stop_error": False, "hold_at": None}
    assert (job.status, job.attempt, job.resume, job.progress) == ("queued", 1, False, 0.0)
    assert job.run_dir == store.state_dir / "runs" / str(job.id)
    assert cli.main(["jobs", "submit", "pi-cache", "--config", '{"split": "test"}', "--set",
                     "representation.mode=cubical", "--set", "limit=5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["split"] == "test" and out["config"]["limit"] == 5
    assert out["config"]["representation"]["mode"] == "cubical"


def test_absurd_epochs_are_refused_at_submit_naming_the_field(store: JobStore, capsys) -> None:
    """Every way in (Python, the CLI; the app calls the same ``submit``) validates."""
    from tgd_core import cli

    with pytest.raises(TGDError, match=r"^bad train config: epochs: .*less than or equal to "):
        store.submit("train", {"epochs": 10**12})
    assert cli.main(["jobs", "submit", "distill", "--set", f"epochs={10**12}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epochs: Input should be less than or equal to 10000" in err
    assert store.list() == []


def test_a_stored_config_that_fails_validation_fails_the_job_with_one_line(
        store: JobStore, start_worker) -> None:
    """A config written by an older version (or by hand) is checked again when the job runs."""
    job = store.submit("train", {"epochs": 1})
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE jobs SET config = ? WHERE id = ?",
                     (json.dumps({**job.config, "epochs": 10**12}), job.id))
    assert start_worker("--once").wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "failed" and job.traceback is None
    assert job.error.startswith("bad train config: epochs: Input should be less than or equal")
    assert "\n" not in job.error


def one_error_line(capsys) -> str:
    """The CLI's stderr, checked to be one line."""
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    return err


def test_an_evaluate_job_needs_its_checkpoint_file_at_submit(store: JobStore, capsys,
                                                             tmp_path: Path) -> None:
    """``submit``'s help says the config is validated now: a checkpoint that is not a file
    is refused then, not when a worker runs the job."""
    from tgd_core import cli

    missing = tmp_path / "missing.pt"
    assert cli.main(["jobs", "submit", "evaluate", "--set", f"checkpoint={missing}"]) == 2
    assert f"bad evaluate config: checkpoint: {missing}: no such file (got " in one_error_line(
        capsys)
    with pytest.raises(TGDError, match=r"^bad evaluate config: checkpoint: .*: a folder, not a "):
        store.submit("evaluate", {"checkpoint": str(tmp_path)})
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(TGDError, match=r"^bad evaluate config: checkpoint: .*fifo.pt: not a reg"):
        store.submit("evaluate", {"checkpoint": str(tmp_path / "fifo.pt")})
    assert store.list() == []
    (tmp_path / "m.pt").write_bytes(b"its content is read when the job runs")
    assert store.submit("evaluate", {"checkpoint": str(tmp_path / "m.pt")}).status == "queued"


def test_job_ids_beyond_sqlite_integers_are_refused_in_one_line(store: JobStore,
                                                                 capsys) -> None:
    """SQLite integers are 64-bit: a larger id was an OverflowError."""
    from tgd_core import cli

    refused = r"^no job -?\d+: job ids are whole numbers from 1 to 9223372036854775807$"
    for job_id in (0, -1, 2**63, 10**23, -(2**64)):
        for action in (store.get, store.cancel, store.resume, store.retry, store.delete):
            with pytest.raises(TGDError, match=refused):
                action(job_id)
    with pytest.raises(TGDError, match=r"^no job 9223372036854775807 in "):
        store.get(2**63 - 1)
    for command in ("show", "logs", "cancel", "resume", "retry", "delete"):
        assert cli.main(["jobs", command, "99999999999999999999999"]) == 2
        assert one_error_line(capsys).endswith(
            "no job 99999999999999999999999: job ids are whole numbers from 1 to "
            "9223372036854775807")


def test_json_nested_too_deeply_is_refused_in_one_line(store: JobStore, capsys,
                                                       tmp_path: Path) -> None:
    """Deeper than Python's JSON parser (or pydantic's serializer) goes: RecursionError and
    'Maximum serialization depth exceeded' were internal errors."""
    from tgd_core import cli

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    for args, option in ((["--config", deep], "--config"),
                         (["--config", f"@{tmp_path / 'deep.json'}"], "deep.json: --config file"),
                         (["--set", f"data={deep}"], "--set data")):
        assert cli.main(["jobs", "submit", "test-free", *args]) == 2
        assert one_error_line(capsys).endswith(f"{option}: JSON nested too deeply to read")
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(1000):  # parses, validates, but cannot be stored as JSON
        node["a"] = node = {}
    with pytest.raises(TGDError, match=r"^bad test-free config: cannot be stored as JSON \("):
        store.submit("test-free", {"data": nested})
    assert store.list() == []


def test_a_state_dir_that_is_not_a_folder_is_refused_and_left_alone(tmp_path: Path,
                                                                    capsys) -> None:
    """An existing empty file given as the state dir was made an SQLite database."""
    from tgd_core import cli

    notes = tmp_path / "notes.txt"
    notes.write_text("")
    assert cli.main(["jobs", "list", "--state-dir", str(notes)]) == 2
    assert one_error_line(capsys).endswith(f"{notes}: the state dir is not a folder; name a "
                                           "folder (it holds jobs.sqlite and runs/) or the "
                                           "jobs.sqlite file itself")
    assert notes.read_bytes() == b""
    with pytest.raises(TGDError, match=r"cannot create the state dir \(Not a directory\)"):
        JobStore(notes / "state")
    (tmp_path / "a" / "jobs.sqlite").mkdir(parents=True)
    with pytest.raises(TGDError, match=r"a/jobs.sqlite: the job store is not a file; move it "):
        JobStore(tmp_path / "a")
    (tmp_path / "named.db").mkdir()  # a folder is a state dir, whatever its name
    with JobStore(tmp_path / "named.db") as s, JobStore(tmp_path / "file.db") as f:
        assert s.db_path == tmp_path / "named.db" / "jobs.sqlite"
        assert f.db_path == tmp_path / "file.db"


def test_cancellable_and_resumable_name_what_the_store_does(store: JobStore) -> None:
    """The app enables its Cancel and Resume buttons from these sets: for every status, the
    store cancels (resumes) a job exactly when its status is in CANCELLABLE (RESUMABLE)."""
    for status in STATUSES:
        for action, allowed in ((store.cancel, CANCELLABLE), (store.resume, RESUMABLE)):
            job = store.submit("test-counter", {"steps": 1})
            with store._tx("test") as c:
                c.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job.id))
            try:
                action(job.id)
                done = True
            except TGDError:
                done = False
            assert done == (status in allowed), (action.__name__, status)


def test_control_transitions(store: JobStore) -> None:
    a, b = store.submit("test-counter", {"steps": 1}), store.submit("test-counter", {"steps": 1})
    assert store.cancel(b.id).status == "cancelled"  # queued: at once
    claimed = store.claim(worker_pid=os.getpid())
    assert claimed is not None and claimed.id == a.id and claimed.status == "running"
    assert store.claim(worker_pid=os.getpid()) is None  # b is not queued any more
    with pytest.raises(TGDError, match="running: cancel it first"):
        store.delete(a.id)
    with pytest.raises(TGDError, match="running: only cancelled/failed/interrupted jobs can be"):
        store.resume(a.id)
    running = store.cancel(a.id, timeout=5)
    assert running.status == "running" and running.cancel_requested and running.kill_at
    assert store.finish(a.id, 1, "failed", error="E", traceback="T")
    assert not store.finish(a.id, 1, "succeeded")  # a finished attempt cannot finish again
    resumed = store.resume(a.id)
    assert (resumed.status, resumed.attempt, resumed.resume) == ("queued", 2, True)
    assert not resumed.cancel_requested and resumed.error is None and resumed.traceback is None
    store.claim(os.getpid())
    assert store.finish(a.id, 2, "succeeded", result={"x": 1})
    with pytest.raises(TGDError, match="succeeded: only"):
        store.cancel(a.id)
    a.run_dir.mkdir(parents=True)
    (a.run_dir / "old.txt").write_text("old")
    retried = store.retry(a.id)
    assert (retried.status, retried.attempt, retried.resume, retried.result) == (
        "queued", 3, False, None)
    assert not a.run_dir.exists()
    b.run_dir.mkdir(parents=True)
    store.delete(b.id)
    assert b.run_dir.exists()  # files stay unless asked
    store.delete(a.id)
    with pytest.raises(TGDError, match=f"no job {a.id}"):
        store.get(a.id)
    c = store.submit("test-counter", {"steps": 1})
    c.run_dir.mkdir(parents=True)
    store.delete(c.id, delete_files=True)
    assert not c.run_dir.exists()
    assert c.id > b.id  # ids are never reused


def test_a_process_reaped_between_the_two_checks_of_pid_alive_is_dead(monkeypatch) -> None:
    """kill(pid, 0) can succeed on a zombie that is reaped before /proc/<pid>/stat is read (a
    crashed job's child, under load): that process is gone, not alive."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is free
    assert not pid_alive(child.pid)
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)  # kill(0) "succeeded" just before
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())


def test_reconcile_interrupts_jobs_of_dead_processes(store: JobStore) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = store.submit("test-counter", {"steps": 1})
    store.claim(worker_pid=dead.pid)
    mine = store.submit("test-counter", {"steps": 1})
    store.claim(worker_pid=os.getpid())
    assert store.reconcile() == [job.id]
    got = store.get(job.id)
    assert got.status == "interrupted" and f"process {dead.pid} is gone" in got.error
    assert store.get(mine.id).status == "running"
    assert store.reconcile(stale_after=0) == [mine.id]  # silent for too long


# -- workers -----------------------------------------------------------------------------------

def test_twenty_jobs_two_at_a_time_none_lost_or_run_twice(store: JobStore, start_worker) -> None:
    ids = [store.submit("test-counter", {"steps": 3}).id for _ in range(20)]
    assert start_worker("--concurrency", "2", "--once").wait(timeout=SLOW) == 0
    events = []
    for job_id in ids:
        job = store.get(job_id)
        assert (job.status, job.attempt, job.progress) == ("succeeded", 1, 1.0), job
        assert job.result == {"total": expected_total(3), "resumed_from": 0}
        runs = executions(store, job_id)
        assert [w for w, _, _ in runs] == ["start", "end"]  # run exactly once, no overlap
        events += [(t, +1 if w == "start" else -1) for w, t, _ in runs]
    running, peak = 0, 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert peak <= 2
    assert store.live_workers() == []  # the worker unregistered itself


def test_failing_job_records_error_and_traceback(store: JobStore, start_worker) -> None:
    job = store.submit("test-counter", {"steps": 5, "fail_at": 2})
    assert start_worker("--once").wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "failed" and job.error == "RuntimeError: boom at step 2"
    assert "in run_counter" in job.traceback and job.traceback.rstrip().endswith(
        "RuntimeError: boom at step 2")
    assert [m["step"] for m in store.read_metrics(job.id)] == [0, 1]
    assert "RuntimeError: boom at step 2" in job.log_path.read_text()


def test_cancel_stops_at_a_step_boundary_with_a_checkpoint(store: JobStore,
                                                           start_worker) -> None:
    job = store.submit("test-counter", {"steps": 100_000, "step_time": 0.01})
    start_worker()
    wait_for(lambda: store.get(job.id).progress > 0, what="progress")
    store.cancel(job.id, timeout=SLOW)  # it stops by itself, long before it would be killed
    wait_for(finished(store, job.id), what="cancel")
    job = store.get(job.id)
    assert job.status == "cancelled" and job.error is None
    assert job.message.startswith("stopped at step")
    state = json.loads((job.checkpoint_dir / "counter.json").read_text())
    assert 0 < state["step"] < 100_000
    assert state["total"] == expected_total(state["step"])
    assert store.read_metrics(job.id)[-1]["step"] == state["step"] - 1
    wait_for(lambda: not pid_alive(job.pid), what="the child to exit")


def test_cancel_kills_a_job_that_ignores_it(store: JobStore, start_worker) -> None:
    job = store.submit("test-counter", {"steps": 100_000, "step_time": 0.01, "ignore_stop": True})
    start_worker()
    job = wait_for(lambda: (j := store.get(job.id)).progress > 0 and j.pid and j, what="start")
    store.cancel(job.id, timeout=0.5)
    wait_for(finished(store, job.id), what="forced cancel")
    done = store.get(job.id)
    assert done.status == "cancelled" and "killed" in done.error
    wait_for(lambda: not pid_alive(job.pid), what="the child to die")


def test_sigkill_then_interrupted_then_resume_gives_the_same_result(store: JobStore,
                                                                   start_worker) -> None:
    cut = store.submit("test-counter", {"steps": 40, "hold_at": 10})
    worker = start_worker()
    running = wait_for(lambda: (j := store.get(cut.id)).progress >= 0.25 and j.pid and j,
                       what="the job to hold at step 10")
    os.kill(worker.pid, signal.SIGKILL)  # the worker, then at once its job: no time to notice
    os.killpg(running.pid, signal.SIGKILL)
    worker.wait()
    wait_for(lambda: not pid_alive(running.pid), what="the job's process to die")
    assert store.get(cut.id).status == "running"  # nobody has noticed yet
    assert start_worker("--once").wait(timeout=SLOW) == 0  # start-up: finds the dead process
    cut = store.get(cut.id)
    assert cut.status == "interrupted" and "is gone" in cut.error
    assert store.resume(cut.id).resume
    (cut.run_dir / "release").touch()
    assert start_worker("--once").wait(timeout=SLOW) == 0
    cut = store.get(cut.id)
    assert cut.status == "succeeded" and cut.attempt == 2
    assert cut.result == {"total": expected_total(40), "resumed_from": 10}
    assert [w for w, _, _ in executions(store, cut.id)] == ["start", "start", "end"]
    assert sorted({m["step"] for m in store.read_metrics(cut.id)}) == list(range(40))
    assert {m["attempt"] for m in store.read_metrics(cut.id)} == {1, 2}


def test_worker_shutdown_interrupts_jobs_resumably(store: JobStore, start_worker) -> None:
    job = store.submit("test-counter", {"steps": 100_000, "step_time": 0.01,
                                        "own_stop_error": True})
    worker = start_worker("--shutdown-timeout", str(SLOW))  # it stops by itself, not killed
    wait_for(lambda: store.get(job.id).progress > 0, what="progress")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "interrupted" and job.error is None
    assert job.message.startswith("CounterStopped: stopped at step")
    assert json.loads((job.checkpoint_dir / "counter.json").read_text())["step"] > 0


def test_two_processes_submitting_at_once(tmp_path: Path, store: JobStore) -> None:
    fresh = tmp_path / "fresh"  # both processes also race to create and migrate the store
    script = ("import sys; from tgd_core.jobs import JobStore; s = JobStore(sys.argv[1]); "
              "[s.submit('test-counter', {'steps': int(sys.argv[2]) * 100 + i + 1}) "
              "for i in range(50)]")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(fresh), str(n)])
             for n in (1, 2)]
    assert [p.wait(timeout=SLOW) for p in procs] == [0, 0]
    with JobStore(fresh) as s:
        jobs = s.list()
        assert sorted(j.id for j in jobs) == list(range(1, 101))
        assert sorted(j.config["steps"] for j in jobs) == [
            n * 100 + i + 1 for n in (1, 2) for i in range(50)]
        for n in (1, 2):  # each process's jobs in its submission order
            mine = sorted((j for j in jobs if j.config["steps"] // 100 == n), key=lambda j: j.id)
            assert [j.config["steps"] for j in mine] == sorted(j.config["steps"] for j in mine)
    with sqlite3.connect(fresh / "jobs.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_ensure_worker_starts_one_detached_worker(store: JobStore) -> None:
    from tgd_core.jobs import ensure_worker

    pid = ensure_worker(concurrency=1, poll=0.2)
    try:
        assert ensure_worker(concurrency=1) == pid
        job = store.submit("test-counter", {"steps": 2})
        wait_for(finished(store, job.id), what="the job")
        assert store.get(job.id).status == "succeeded"
        assert store.live_workers() == [pid]
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), what="the worker to stop")
    assert store.live_workers() == []


# -- CLI ---------------------------------------------------------------------------------------

def test_cli_list_show_logs(store: JobStore, start_worker, capsys) -> None:
    from tgd_core import cli

    done = store.submit("test-counter", {"steps": 2})
    assert start_worker("--once").wait(timeout=SLOW) == 0
    queued = store.submit("test-counter", {"steps": 1})
    assert cli.main(["jobs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in listed] == [queued.id, done.id]
    for j in listed:
        assert {"id", "kind", "status", "progress", "created_at"} <= set(j)
        assert isinstance(j["id"], int) and j["kind"] == "test-counter"
        assert isinstance(j["progress"], float) and 0 <= j["progress"] <= 1
        assert datetime.fromisoformat(j["created_at"]).tzinfo is not None
    assert [j["status"] for j in listed] == ["queued", "succeeded"]
    assert cli.main(["jobs", "show", str(done.id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["result"] == {"total": 1, "resumed_from": 0} and shown["run_dir"]
    assert cli.main(["jobs", "logs", str(done.id), "--follow"]) == 0
    assert "counter done: 1" in capsys.readouterr().out
    assert cli.main(["jobs", "logs", str(done.id), "--metrics"]) == 0
    assert [json.loads(x)["step"] for x in capsys.readouterr().out.splitlines()] == [0, 1]
    assert cli.main(["jobs", "list"]) == 0
    table = capsys.readouterr().out  # the same status and progress texts as the app's table
    assert "succeeded" in table and store.get(done.id).progress_text in table
    assert cli.main(["jobs", "cancel", str(queued.id)]) == 0
    assert cli.main(["jobs", "retry", str(queued.id)]) == 0
    assert cli.main(["jobs", "delete", str(queued.id), "--files"]) == 0
    capsys.readouterr()
    assert cli.main(["jobs", "show", "999"]) == 2
    err = capsys.readouterr().err.strip()  # one line, whatever the CLI's prefix
    assert "\n" not in err and "error" in err and err.endswith(f"no job 999 in {store.db_path}")


# -- engine runners ----------------------------------------------------------------------------

def _tiny_cifar(root: Path, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 folder whose test_lossless_1k split holds ``n`` random images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    (root / "cifar10").mkdir(parents=True)
    with open(root / "cifar10" / "test_batch_lossless_1k", "wb") as f:
        pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(n, -1),
                     "labels": labels.tolist()}, f)
    return images, labels


def test_pi_cache_job_completes_a_partial_cache(store: JobStore, start_worker, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tgd_core.topology import PaperPIConfig
    from tgd_core.topology.cache import PICache
    from tgd_core.topology.representation import compute_pis

    images = _tiny_cifar(tmp_path / "data")[0][:10]
    entry = PICache.for_images(images, PaperPIConfig(), "cifar10", "test_lossless_1k",
                               tmp_path / "cache")
    assert entry.fill(images, PaperPIConfig(), shard=(0, 2)) == 5  # an earlier, partial run
    monkeypatch.setenv("TEST_JOBS_PART_ROWS", "4")  # the job: 3 rounds, 2 parts left to do
    job = store.submit("pi-cache", {"split": "test_lossless_1k", "data_dir": str(tmp_path / "data"),
                                    "cache_dir": str(tmp_path / "cache"), "limit": 10})
    assert start_worker("--once").wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "succeeded", job.traceback
    assert job.result == {"cache": str(entry.root), "n": 10, "shape": [10, 6, 50, 50],
                          "computed": 5, "complete": True}
    assert [m["images_done"] for m in store.read_metrics(job.id)] == [6, 10]
    np.testing.assert_array_equal(entry.load(), compute_pis(images, PaperPIConfig())[1])
    assert json.loads(job.result_path.read_text()) == job.result


def test_a_teacher_that_is_no_checkpoint_fails_naming_the_path_not_its_content(
        store: JobStore, start_worker) -> None:
    secret = Path("/etc/passwd")
    if not secret.is_file():
        pytest.skip("no /etc/passwd")
    job = store.submit("distill", {"method": "kd", "teachers": {"t1": str(secret)},
                                   "epochs": 1, "device": "cpu"})
    assert start_worker("--once").wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "failed" and job.error.startswith(f"{secret}: ")
    assert "\n" not in job.error
    content = secret.read_text()
    assert content[:4] not in job.error  # not even the header bytes it checked
    assert not any(line in job.error for line in content.splitlines() if len(line) >= 4)


def test_evaluate_job_matches_direct_evaluation(store: JobStore, start_worker,
                                                tmp_path: Path) -> None:
    import torch

    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.evaluation.metrics import robustness_sweep
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model

    images, labels = _tiny_cifar(tmp_path / "data")
    torch.manual_seed(0)
    model = build_model("wrn16_1")
    path = save_checkpoint(tmp_path / "m.pt", model, input_kind="raw", normalization=CIFAR10_RAW)
    job = store.submit("evaluate", {"checkpoint": str(path), "split": "test_lossless_1k",
                                    "data_dir": str(tmp_path / "data"), "corruption": "contrast",
                                    "severity": 5})
    assert start_worker("--once").wait(timeout=SLOW) == 0
    job = store.get(job.id)
    assert job.status == "succeeded", job.traceback
    direct = robustness_sweep(model, images, labels, CIFAR10_RAW, corruptions=("contrast",),
                              severities=(5,), include_clean=False)
    assert job.result["rows"] == direct
    assert (job.run_dir / "results.csv").exists()
