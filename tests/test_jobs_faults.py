"""Jobs under crashes: a worker killed while its jobs run, and a real process killed at each
write point of the job store (``TGD_FAULT``, see :mod:`tgd_core.core.fileio`).

After any crash the store must be consistent: the job is not lost, never runs in two processes
at once, is left in a known status after reconciliation, its ``result.json`` is complete or
absent, and one resume finishes it. A store damaged on disk (or of another program) is one line
naming it for every command, and a row whose stored JSON is damaged is still listed, shown and
deletable. Tests poll for the states they need; the limits only catch hangs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import test_jobs
import torch
from test_jobs import executions, expected_total, finished

from tests.waiting import SLOW, wait_for
from tgd_core.core.errors import TGDError
from tgd_core.jobs import JobStore
from tgd_core.jobs.run_one import run_job
from tgd_core.jobs.store import RESUMABLE, pid_alive
from tgd_core.jobs.worker import Supervisor
from tgd_core.nets.checkpoints import load_checkpoint

store, start_worker = test_jobs.store, test_jobs.start_worker  # the fixtures


def job_processes(store: JobStore) -> list[int]:
    """Pids of the live ``run_one`` processes of this store (from /proc)."""
    marks = (b"tgd_core.jobs.run_one", str(store.state_dir).encode())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(m in argv for m in marks) and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def run_queue(store: JobStore) -> None:
    """What a new worker does: reconcile, then run every queued job until the queue is empty."""
    assert Supervisor(store, poll=0.1, once=True).run() == 0


def store_is_sound(store: JobStore) -> bool:
    with sqlite3.connect(store.db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- a worker killed while its jobs run ------------------------------------------------------

@pytest.mark.usefixtures("cifar_test_images")
def test_a_training_job_of_a_killed_worker_stops_with_a_checkpoint_and_resumes_exactly(
        store: JobStore, start_worker, tmp_path: Path) -> None:
    """SIGKILL the worker of a real training job: its child notices, stops at the next step
    with ``latest.pt`` and ends ``interrupted``; resumed, it ends with the weights of an
    uninterrupted run of the same config."""
    config = {"student": "wrn16_1", "train_subset": 128, "test_subset": 32, "epochs": 2,
              "batch_size": 32, "milestones": [1], "threads": 1, "device": "cpu"}
    cut = store.submit("test-train-held", config)  # holds after its first step until released
    worker = start_worker()
    cut = orphan(store, cut.id, worker)
    assert cut.status == "interrupted", cut.error
    assert cut.error == f"interrupted: its worker (pid {worker.pid}) died"
    assert cut.message == "stopped at epoch 1, step 2"
    assert load_checkpoint(cut.checkpoint_dir / "latest.pt").training_state["loop"]["step"] == 2

    (cut.run_dir / "release").touch()
    queued = store.resume(cut.id)
    assert queued.message is None and queued.progress == cut.progress  # not "stopped at …"
    run_queue(store)
    cut = store.get(cut.id)
    assert (cut.status, cut.attempt) == ("succeeded", 2), cut.error
    whole = train_here(config, tmp_path / "whole")
    resumed = load_checkpoint(cut.checkpoint_dir / "latest.pt").state_dict
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def orphan(store: JobStore, job_id: int, worker):
    """Wait until the job runs and has made progress, SIGKILL its worker, then wait until the
    job has ended and its process has exited; the job as the store then has it."""
    running = wait_for(lambda: (j := store.get(job_id)).progress > 0 and j.pid and j,
                       what="the job to make progress")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    wait_for(finished(store, job_id), what="the orphaned job to end")
    wait_for(lambda: not pid_alive(running.pid), what="the orphaned process to exit")
    return store.get(job_id)


def train_here(config: dict, out: Path) -> dict[str, torch.Tensor]:
    """Weights of an uninterrupted run of ``config`` in this process (its threads restored)."""
    from tgd_core.training import TrainConfig, run_training

    threads = torch.get_num_threads()
    try:
        run_training(TrainConfig.build(**config, out_dir=str(out)), progress=False)
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(out / "latest.pt").state_dict


def test_a_job_that_ignores_the_stop_is_killed_when_its_worker_is_gone(
        store: JobStore, start_worker) -> None:
    job = store.submit("test-counter", {"steps": 10, "hold_at": 1, "ignore_stop": True})
    worker = start_worker("--shutdown-timeout", "1")
    job = orphan(store, job.id, worker)
    assert job.status == "interrupted"
    assert job.error == f"killed: did not stop within 1 s after its worker (pid {worker.pid}) died"


# -- a crash at each write point -----------------------------------------------------------

# fault point (TGD_FAULT) → the job's status once the crashed processes are gone and the store
# is reconciled. The worker's points: registering, claiming, recording the child's pid (the
# child dies at the same point); the child's: heartbeats/progress, result.json, finishing (the
# worker then dies finishing it too).
WORKER_FAULTS = [
    ("jobs.register_worker", "queued"),
    ("jobs.claim", "queued"),
    ("jobs.claim.committed", "interrupted"),
    ("jobs.set_pid", "interrupted"),
    ("jobs.set_pid.committed", "interrupted"),
    ("jobs.heartbeat:2", "failed"),
    ("jobs.heartbeat.committed:2", "failed"),
    ("jobs.result", "failed"),
    ("jobs.finish", "interrupted"),
    ("jobs.finish.committed", "succeeded"),
]
STEPS = 8


@pytest.mark.parametrize("fault, after_crash", WORKER_FAULTS)
def test_a_crash_at_a_store_write_loses_nothing_and_runs_nothing_twice(
        store: JobStore, start_worker, fault: str, after_crash: str) -> None:
    job = store.submit("test-counter", {"steps": STEPS, "step_time": 0.1})
    start_worker("--once", env={"TGD_FAULT": fault}).wait(timeout=SLOW)
    wait_for(lambda: not job_processes(store), what="the job's processes to exit")
    assert store_is_sound(store)
    store.reconcile()  # what a new worker does first
    job = store.get(job.id)
    assert job.status == after_crash, (job.status, job.error)
    done = {"total": expected_total(STEPS), "resumed_from": 0}
    if job.result_path.exists():  # complete or absent, never torn
        assert json.loads(job.result_path.read_text()) == done

    if job.status in RESUMABLE:
        store.resume(job.id)
    run_queue(store)
    job = store.get(job.id)
    assert job.status == "succeeded" and job.attempt == 1 + (after_crash in RESUMABLE)
    assert job.result["total"] == expected_total(STEPS)
    assert json.loads(job.result_path.read_text()) == job.result
    assert "overlap" not in [what for what, _, _ in executions(store, job.id)]
    assert sorted({m["step"] for m in store.read_metrics(job.id)}) == list(range(STEPS))
    assert store_is_sound(store)


@pytest.mark.parametrize("fault, jobs_after", [
    ("jobs.submit", []), ("jobs.submit.committed", ["queued"]),
    ("jobs.requeue", ["interrupted"]), ("jobs.requeue.committed", ["queued"]),
])
def test_a_command_killed_mid_write_leaves_the_store_before_or_after_it(
        store: JobStore, fault: str, jobs_after: list[str]) -> None:
    """``tgd jobs submit`` / ``resume`` killed inside or right after their transaction."""
    if fault.startswith("jobs.requeue"):
        job = store.submit("test-counter", {"steps": 2})
        store.claim(worker_pid=2**22 + 1)  # beyond Linux's pid_max: a worker long gone
        store.reconcile()
        command = ["resume", str(job.id)]
    else:
        command = ["submit", "test-counter", "--set", "steps=2"]
    proc = subprocess.run([sys.executable, "-m", "tgd_core", "jobs", *command],
                          env={**os.environ, "TGD_FAULT": fault}, capture_output=True,
                          timeout=SLOW)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert store_is_sound(store)
    assert [j.status for j in store.list()] == jobs_after
    if jobs_after == ["interrupted"]:
        store.resume(store.list()[0].id)
    run_queue(store)
    assert [(j.status, j.result) for j in store.list()] == [
        ("succeeded", {"total": 1, "resumed_from": 0})] * len(jobs_after)


# -- a damaged store -------------------------------------------------------------------------

def overwrite_pages(db: Path) -> None:
    """Every page after the first (which holds the header and the schema) overwritten."""
    data = bytearray(db.read_bytes())
    assert len(data) > 4096, "a store of one page only"
    data[4096:] = b"\xff" * (len(data) - 4096)
    db.write_bytes(bytes(data))


def replace_with(*statements: str, version: int = 1) -> Callable[[Path], None]:
    """A damage that replaces the store with a database made by ``statements`` at schema
    ``version``."""
    def damage(db: Path) -> None:
        db.unlink()
        with closing(sqlite3.connect(db)) as conn:
            for sql in (*statements, f"PRAGMA user_version = {version}"):
                conn.execute(sql)
            conn.commit()
    return damage


DAMAGES = {
    "past-its-header": (overwrite_pages, "the job store is damaged (database disk image is "
                                         "malformed); move it aside"),
    "another-schema": (replace_with("CREATE TABLE x (a)"),
                       "not a job store of this program (no table jobs); move it aside"),
    "another-program": (replace_with("CREATE TABLE notes (a)", "CREATE TABLE tags (b)",
                                     version=0),
                        "not a job store of this program (tables notes, tags but no schema "
                        "version); move it aside"),
    "missing-columns": (replace_with("CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT)",
                                     "INSERT INTO jobs (kind) VALUES ('x')"),
                        "not a job store of this program (table jobs lacks 24 of its columns: "
                        "attempt, cancel_requested, checkpoint_dir, …); move it aside"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_store_is_one_line_naming_it_for_every_command(
        damage: str, tmp_path: Path, capsys) -> None:
    """Damage past the header met by a later query, or a database of another schema at this
    program's version, were internal errors ('malformed', 'no such table: jobs')."""
    from tgd_core import cli

    make_damage, problem = DAMAGES[damage]
    with JobStore(tmp_path / "state") as s:
        db = s.db_path
        s.cancel(s.submit("pi-cache", {"split": "test"}).id)
    make_damage(db)
    before = db.read_bytes()
    for command in (["list"], ["show", "1"], ["logs", "1"], ["cancel", "1"], ["retry", "1"],
                    ["delete", "1"], ["submit", "pi-cache"]):
        assert cli.main(["jobs", *command, "--state-dir", str(tmp_path / "state")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"tgd: error: jobs {command[0]}: {db}: ")
        assert problem in err
    with pytest.raises(TGDError, match=f"^{db}: "):  # the app's way in: the same one line
        with JobStore(db) as s:
            s.list()
    assert db.read_bytes() == before  # nothing of it lost or rewritten


def test_a_row_whose_stored_json_is_damaged_is_listed_shown_failed_and_deletable(
        store: JobStore, capsys) -> None:
    """A config or result that is not a JSON object (by hand, a bad disk) was a JSONDecodeError
    on 'tgd jobs list' and 'show'."""
    from tgd_core import cli

    bad, deep, listed, good = (store.submit("test-counter", {"steps": 1}) for _ in range(4))
    with closing(sqlite3.connect(store.db_path)) as conn:
        for job, config, result in ((bad, "{bad", None), (deep, "[" * 100_000, None),
                                    (listed, "[1]", "nope")):
            conn.execute("UPDATE jobs SET config = ?, result = ? WHERE id = ?",
                         (config, result, job.id))
        conn.commit()
    assert cli.main(["jobs", "list"]) == 0
    table = capsys.readouterr().out
    assert f"job {bad.id}: stored config is not valid JSON; delete it and submit" in table
    assert cli.main(["jobs", "list", "--json"]) == 0
    rows = {j["id"]: j for j in json.loads(capsys.readouterr().out)}
    assert [rows[j.id]["damaged"] for j in (bad, deep, listed, good)] == [
        {"config": "not valid JSON"}, {"config": "JSON nested too deeply to read"},
        {"config": "a JSON list, not an object", "result": "not valid JSON"}, {}]
    assert [rows[j.id]["config"] for j in (bad, deep, listed)] == [None] * 3
    assert rows[good.id]["config"]["steps"] == 1

    assert cli.main(["jobs", "show", str(bad.id)]) == 0
    shown = capsys.readouterr().out
    assert f"damaged:          job {bad.id}: stored config is not valid JSON" in shown
    assert "config:           unreadable (not valid JSON)" in shown
    assert store.claim(worker_pid=os.getpid()).id == bad.id
    assert run_job(store, bad.id) == "failed"  # nothing to validate or run
    assert store.get(bad.id).error == store.get(bad.id).damage
    assert cli.main(["jobs", "delete", str(bad.id)]) == 0
    assert [j.id for j in store.list()] == [good.id, listed.id, deep.id]
