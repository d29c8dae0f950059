"""The job store: one SQLite file (``<state dir>/jobs.sqlite``, WAL mode) shared by every process.

Rows of ``jobs`` hold a job's kind, validated config, status, progress, timestamps (Unix seconds),
error and traceback, the pids running it and the paths of its files under
``<state dir>/runs/<id>/``. Every write is one short ``BEGIN IMMEDIATE`` transaction, so claiming
a queued job is atomic across processes. The schema version is ``PRAGMA user_version``;
:data:`MIGRATIONS` are applied in order when a store is opened.

Each write transaction has two fault points (:func:`tgd_core.core.fileio.fault_point`):
``jobs.<name>`` inside the transaction just before it commits and ``jobs.<name>.committed``
just after, where ``<name>`` is the operation (``submit``, ``claim``, ``set_pid``,
``heartbeat``, ``finish``, ``cancel``, ``requeue``, ...): ``TGD_FAULT=jobs.claim`` kills a
worker halfway through claiming a job.

A damaged store never ends a command with a traceback: every statement runs through
:meth:`JobStore._tx` or :meth:`JobStore._read`, which turn SQLite's errors into one-line
TGDErrors naming the file; the schema is checked when a store is opened, before anything is
written to it (:func:`expected_tables`), so a database of another program is refused untouched;
a row whose stored JSON cannot be read is still listed, shown and deletable (:attr:`Job.damaged`)
and fails if run.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tgd_core.core import paths
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import fault_point

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
RESUMABLE = frozenset({"failed", "cancelled", "interrupted"})
CANCELLABLE = frozenset({"queued", "running"})
DB_NAME = "jobs.sqlite"
BUSY_TIMEOUT_MS = 30_000
STALE_AFTER_S = 600.0  # a running job whose heartbeat is older than this is interrupted
MAX_JOB_ID = 2**63 - 1  # SQLite integers are 64-bit
MOVE_ASIDE = "move it aside (a new, empty store is made in its place) or restore it"

# Each migration is a list of statements; migration i takes the schema from version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        f"""CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
            progress REAL NOT NULL DEFAULT 0,
            epoch INTEGER,
            eta_s REAL,
            message TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            heartbeat_at REAL,
            error TEXT,
            traceback TEXT,
            worker_pid INTEGER,
            pid INTEGER,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            kill_at REAL,
            attempt INTEGER NOT NULL DEFAULT 1,
            resume INTEGER NOT NULL DEFAULT 0,
            run_dir TEXT NOT NULL DEFAULT '',
            log_path TEXT NOT NULL DEFAULT '',
            metrics_path TEXT NOT NULL DEFAULT '',
            checkpoint_dir TEXT NOT NULL DEFAULT '',
            result_path TEXT NOT NULL DEFAULT '',
            result TEXT
        )""",
        "CREATE INDEX jobs_status ON jobs (status, id)",
        """CREATE TABLE workers (
            pid INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            concurrency INTEGER NOT NULL
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # reaped since kill(0), unless there is no /proc (not Linux)
        return not Path("/proc/self/stat").exists()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class Job:
    """One row of the store (times are Unix seconds)."""

    id: int
    kind: str
    config: dict[str, Any]
    status: str
    progress: float
    epoch: int | None
    eta_s: float | None
    message: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    error: str | None
    traceback: str | None
    worker_pid: int | None
    pid: int | None
    cancel_requested: bool
    kill_at: float | None
    attempt: int
    resume: bool
    run_dir: Path
    log_path: Path
    metrics_path: Path
    checkpoint_dir: Path
    result_path: Path
    result: dict[str, Any] | None
    #: stored JSON fields that cannot be read (``config``, ``result``) → why; each is then
    #: ``{}`` (config) or None (result) above
    damaged: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """The job of a row; a config or result that is not a readable JSON object is noted
        in :attr:`damaged` (the row is still listed, shown and deletable)."""
        d = dict(row)
        d["damaged"] = {}
        for key, empty in (("config", {}), ("result", None)):
            d[key], problem = _stored_object(d[key], empty)
            if problem:
                d["damaged"][key] = problem
        d["cancel_requested"], d["resume"] = bool(d["cancel_requested"]), bool(d["resume"])
        for key in ("run_dir", "log_path", "metrics_path", "checkpoint_dir", "result_path"):
            d[key] = Path(d[key])
        return cls(**d)

    @property
    def damage(self) -> str | None:
        """One line naming this job and what of it cannot be read (None when all can)."""
        if not self.damaged:
            return None
        what = "; ".join(f"{key} is {problem}" for key, problem in self.damaged.items())
        return f"job {self.id}: stored {what}; delete it and submit the job again"

    @property
    def config_text(self) -> str:
        """The config as JSON, or why it cannot be read."""
        problem = self.damaged.get("config")
        return f"unreadable ({problem})" if problem else json.dumps(self.config)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def eta_text(self) -> str:
        """The estimated time left of a running job as ``H:MM:SS`` ('' when not running or
        not yet known): one format for the CLI and the app."""
        if self.status != "running" or self.eta_s is None:
            return ""
        s = int(round(self.eta_s))
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

    @property
    def stopping(self) -> bool:
        """Cancelled while running: asked to stop, not stopped yet (its runner saves a
        checkpoint at the next step, or its worker kills it at ``kill_at``)."""
        return self.status == "running" and self.cancel_requested

    @property
    def status_text(self) -> str:
        """The status as people should read it: ``stopping…`` for a running job that was
        cancelled and has not stopped yet, else the stored status."""
        return "stopping…" if self.stopping else self.status

    @property
    def progress_text(self) -> str:
        """The progress in percent, with one decimal below 10 % so that a long run's first
        steps show (0.3 %, not 0 %)."""
        percent = 100.0 * self.progress
        return f"{percent:.1f} %" if 0 < percent < 10 else f"{percent:.0f} %"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, times as local ISO 8601 with offset."""
        d = asdict(self)
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at", "kill_at"):
            d[key] = _iso(d[key])
        for key in ("run_dir", "log_path", "metrics_path", "checkpoint_dir", "result_path"):
            d[key] = str(d[key])
        for key in self.damaged:  # unreadable, not empty
            d[key] = None
        return d


def _stored_object(text: str | None, empty: Any) -> tuple[Any, str | None]:
    """A JSON object stored in a row (None stays ``empty``) → (it, None), or (``empty``,
    the problem) when it is not JSON, too deeply nested to read or not an object."""
    if text is None:
        return empty, None
    try:
        value = json.loads(text)
    except (ValueError, TypeError):  # JSONDecodeError, or a non-text value put in by hand
        return empty, "not valid JSON"
    except RecursionError:
        return empty, "JSON nested too deeply to read"
    if not isinstance(value, dict):
        return empty, f"a JSON {type(value).__name__}, not an object"
    return value, None


def _resolve(path: str | Path | None) -> tuple[Path, Path]:
    """``path`` (a state dir, a .sqlite or .db file or None for ``TGD_STATE_DIR``) → (state
    dir, db). TGDError if the state dir exists but is no folder, or the db is no file."""
    p = Path(path).expanduser() if path is not None else paths.state_dir()
    is_db = p.suffix in (".sqlite", ".db") and not p.is_dir()
    state_dir, db = (p.parent, p) if is_db else (p, p / DB_NAME)
    if os.path.lexists(state_dir) and not state_dir.is_dir():
        raise TGDError(f"{state_dir}: the state dir is not a folder; name a folder (it holds "
                       f"{DB_NAME} and runs/) or the {DB_NAME} file itself")
    if os.path.lexists(db) and not db.is_file():
        raise TGDError(f"{db}: the job store is not a file; {MOVE_ASIDE}")
    return state_dir, db


def _tables(conn: sqlite3.Connection) -> dict[str, set[str]]:
    """Each table of the database (SQLite's own left out) → its column names."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%'")]
    return {name: _columns(conn, name) for name in names}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty if there is no such table)."""
    return {r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}


def expected_tables() -> dict[str, set[str]]:
    """The tables and columns of the current schema: :data:`MIGRATIONS` applied to an empty
    in-memory database (so the check on open follows every new migration by itself)."""
    with closing(sqlite3.connect(":memory:")) as conn:
        for statements in MIGRATIONS:
            for sql in statements:
                conn.execute(sql)
        return _tables(conn)


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    """The first table this program uses that ``conn`` lacks or that lacks columns, said in
    a few words (None when it has them all)."""
    for table, columns in expected_tables().items():
        have = _columns(conn, table)
        missing = sorted(columns - have)
        if missing:
            names = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
            return (f"table {table} lacks {len(missing)} of its columns: {names}" if have
                    else f"no table {table}")
    return None


class StoreBusy(TGDError):
    """Another process held the store locked for longer than the busy timeout."""


class JobStore:
    """Jobs in ``<state dir>/jobs.sqlite``; safe to use from many processes and threads."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.state_dir, self.db_path = _resolve(path)
        self.state_dir = self.state_dir.resolve()
        self.db_path = self.db_path.resolve()
        self.runs_dir = self.state_dir / "runs"
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TGDError(f"{self.db_path.parent}: cannot create the state dir "
                           f"({exc.strerror or exc})") from None
        self._lock = threading.RLock()
        with self._sqlite_errors():
            self._conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    def _open(self) -> None:
        """Set the connection up, check the schema before anything is written to the file (a
        database of another program is left as it was), switch to WAL and migrate (then check
        the migrated schema)."""
        self._conn.row_factory = sqlite3.Row
        self._query(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry_locked(self._check_schema)
        self._retry_locked(lambda: self._query("PRAGMA journal_mode = WAL"))
        self._query("PRAGMA synchronous = NORMAL")
        if self._retry_locked(self._migrate):
            self._check_schema()

    @staticmethod
    def _retry_locked(action: Callable[[], Any]) -> Any:
        """Run ``action`` (its result returned), retrying while the database is locked:
        switching a new file to WAL needs an exclusive lock and SQLite answers "database is
        locked" at once, without its busy handler, when another process is opening the same
        new store."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.01
        while True:
            try:
                return action()
            except StoreBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _check_schema(self) -> None:
        """TGDError unless the file holds what its schema version says: no table at version 0
        (a new store), every table and column this program uses at the current version (an
        older one is checked once migrated; a newer one is refused by :meth:`_migrate`). So a
        database of another program, or one changed by hand, is refused when opened."""
        with self._snapshot() as c:  # the version and the tables of one state of the file
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and (tables := sorted(_tables(c))):
                problem = f"tables {', '.join(tables[:3])} but no schema version"
            elif version == SCHEMA_VERSION:
                problem = _schema_problem(c)
            else:
                return
        if problem:
            raise TGDError(f"{self.db_path}: not a job store of this program ({problem}); "
                           f"{MOVE_ASIDE}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Turn an SQLite error met on the store into one TGDError naming its file: every
        statement runs inside this, through :meth:`_tx` or :meth:`_read`. (A ProgrammingError
        is a bug of this module, not a problem of the file: it is left as it is.)"""
        try:
            yield
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._store_error(exc) from None

    def _store_error(self, exc: sqlite3.DatabaseError) -> TGDError:
        """The TGDError for ``exc``: a busy store ("database is locked"), a damaged one (a
        plain DatabaseError: SQLITE_CORRUPT, SQLITE_NOTADB) or another failure of SQLite's
        (an I/O error, a full disk, a read-only file, ...)."""
        text = str(exc) or type(exc).__name__
        if "is locked" in text:
            return StoreBusy(f"{self.db_path}: the job store is busy ({text}); try again")
        if type(exc) is sqlite3.DatabaseError:
            return TGDError(f"{self.db_path}: the job store is damaged ({text}); {MOVE_ASIDE}")
        return TGDError(f"{self.db_path}: cannot use the job store ({text})")

    @contextmanager
    def _tx(self, name: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE (waits for other writers);
        ``name`` names its fault points (``jobs.<name>`` before COMMIT, ``.committed`` after).
        Any failure, COMMIT's included, rolls it back."""
        with self._lock, self._sqlite_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                fault_point(f"jobs.{name}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        fault_point(f"jobs.{name}.committed")

    def _rollback(self) -> None:
        """End the open transaction, if any; the error that ended it is the one reported (a
        rollback failing on a damaged file would only repeat it)."""
        with suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection for reading, under the lock, SQLite's errors made TGDErrors."""
        with self._lock, self._sqlite_errors():
            yield self._conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """:meth:`_read` inside one read transaction: its statements see one state of the
        file, never half of another process's commit (a new store's tables without the
        schema version its migration sets in the same transaction)."""
        with self._read() as c:
            c.execute("BEGIN")
            try:
                yield c
            finally:
                self._rollback()  # a read: nothing to keep

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._read() as c:
            return c.execute(sql, args).fetchall()

    def _migrate(self) -> bool:
        """Apply the migrations the store lacks; whether there were any."""
        if self.schema_version() == SCHEMA_VERSION:
            return False
        with self._tx("migrate") as c:
            # re-read under the write lock: another process may have migrated meanwhile
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise TGDError(f"{self.db_path}: schema version {version} is newer than this "
                               f"program's ({SCHEMA_VERSION}); upgrade tgd")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    c.execute(sql)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return True

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def _row(self, c: sqlite3.Connection, job_id: int) -> Job:
        """The job ``job_id`` (TGDError if there is none, or the id cannot be one)."""
        if not 1 <= job_id <= MAX_JOB_ID:
            raise TGDError(f"no job {job_id}: job ids are whole numbers from 1 to {MAX_JOB_ID}")
        row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise TGDError(f"no job {job_id} in {self.db_path}")
        return Job.from_row(row)

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        with self._read() as c:
            return self._row(c, int(job_id))

    def list(self, status: str | None = None, kind: str | None = None) -> list[Job]:
        """Jobs, newest first, optionally filtered by status and kind."""
        sql, args = "SELECT * FROM jobs WHERE 1", []
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        return [Job.from_row(r) for r in self._query(sql + " ORDER BY id DESC", tuple(args))]

    def read_metrics(self, job_id: int) -> list[dict[str, Any]]:
        """The job's metrics lines (``ctx.log``), oldest first; a torn last line is skipped."""
        path = self.get(job_id).metrics_path
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    # -- submitting and control ----------------------------------------------------------------

    def submit(self, kind: str, config: Mapping[str, Any] | None = None) -> Job:
        """Validate ``config`` for ``kind`` (TGDError naming the bad field) and queue the job."""
        from tgd_core.jobs.registry import validate_config

        clean = validate_config(kind, dict(config or {}))
        with self._tx("submit") as c:
            job_id = c.execute(
                "INSERT INTO jobs (kind, config, status, created_at) VALUES (?, ?, 'queued', ?)",
                (kind, json.dumps(clean), time.time())).lastrowid
            run_dir = self.runs_dir / str(job_id)
            c.execute("UPDATE jobs SET run_dir = ?, log_path = ?, metrics_path = ?, "
                      "checkpoint_dir = ?, result_path = ? WHERE id = ?",
                      (str(run_dir), str(run_dir / "output.log"), str(run_dir / "metrics.jsonl"),
                       str(run_dir / "checkpoints"), str(run_dir / "result.json"), job_id))
            return self._row(c, job_id)

    def cancel(self, job_id: int, timeout: float = 30.0) -> Job:
        """Cancel: a queued job at once; a running one is asked to stop at its next step
        boundary and killed by its worker ``timeout`` seconds later if it has not."""
        with self._tx("cancel") as c:
            job = self._row(c, job_id)
            if job.status == "queued":
                c.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, "
                          "message = 'cancelled before it started' WHERE id = ?",
                          (time.time(), job_id))
            elif job.status == "running":
                c.execute("UPDATE jobs SET cancel_requested = 1, kill_at = ? WHERE id = ?",
                          (time.time() + max(0.0, timeout), job_id))
            else:
                raise TGDError(f"job {job_id} is {job.status}: only queued or running jobs can "
                               "be cancelled")
            return self._row(c, job_id)

    def resume(self, job_id: int) -> Job:
        """Queue a failed, cancelled or interrupted job again; it continues from its checkpoint
        (its progress is kept, its message — where it stopped — cleared)."""
        return self._requeue(job_id, resume=True)

    def retry(self, job_id: int) -> Job:
        """Queue a finished job again from scratch: its run folder is emptied."""
        return self._requeue(job_id, resume=False)

    def _requeue(self, job_id: int, *, resume: bool) -> Job:
        allowed = RESUMABLE if resume else FINISHED
        with self._tx("requeue") as c:
            job = self._row(c, job_id)
            if job.status not in allowed:
                verb = "resumed" if resume else "retried"
                raise TGDError(f"job {job_id} is {job.status}: only {'/'.join(sorted(allowed))} "
                               f"jobs can be {verb}")
            if not resume:
                shutil.rmtree(job.run_dir, ignore_errors=True)
            fresh = "" if resume else ", progress = 0, epoch = NULL, eta_s = NULL"
            c.execute("UPDATE jobs SET status = 'queued', attempt = attempt + 1, resume = ?, "
                      "cancel_requested = 0, kill_at = NULL, error = NULL, traceback = NULL, "
                      "started_at = NULL, finished_at = NULL, heartbeat_at = NULL, pid = NULL, "
                      f"worker_pid = NULL, result = NULL, message = NULL{fresh} WHERE id = ?",
                      (int(resume), job_id))
            return self._row(c, job_id)

    def delete(self, job_id: int, delete_files: bool = False) -> None:
        """Remove a job that is not running; its run folder too with ``delete_files``."""
        with self._tx("delete") as c:
            job = self._row(c, job_id)
            if job.status == "running":
                raise TGDError(f"job {job_id} is running: cancel it first")
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        if delete_files:
            shutil.rmtree(job.run_dir, ignore_errors=True)

    # -- used by workers -----------------------------------------------------------------------

    def claim(self, worker_pid: int) -> Job | None:
        """Atomically take the oldest queued job for ``worker_pid`` (status → running)."""
        now = time.time()
        with self._tx("claim") as c:
            row = c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1"
                            ).fetchone()
            if row is None:
                return None
            c.execute("UPDATE jobs SET status = 'running', worker_pid = ?, pid = NULL, "
                      "started_at = ?, heartbeat_at = ?, finished_at = NULL, eta_s = NULL "
                      "WHERE id = ?", (worker_pid, now, now, row["id"]))
            return self._row(c, row["id"])

    def set_pid(self, job_id: int, attempt: int, pid: int) -> None:
        """Record the process running this attempt."""
        with self._tx("set_pid") as c:
            c.execute("UPDATE jobs SET pid = ?, heartbeat_at = ? WHERE id = ? AND attempt = ? "
                      "AND status = 'running'", (pid, time.time(), job_id, attempt))

    def heartbeat(self, job_id: int, attempt: int,
                  progress: Mapping[str, Any] | None = None) -> tuple[bool, bool]:
        """Mark this attempt alive (and store ``progress``: fraction, epoch, eta_s, message).
        Returns (cancel requested, attempt still owns the job)."""
        sets, args = "heartbeat_at = ?", [time.time()]
        for key, value in (progress or {}).items():
            if key not in ("progress", "epoch", "eta_s", "message"):
                raise KeyError(key)
            sets, args = f"{sets}, {key} = ?", [*args, value]
        with self._tx("heartbeat") as c:
            c.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND attempt = ? AND status = 'running'",
                      (*args, job_id, attempt))
            row = c.execute("SELECT cancel_requested, status, attempt FROM jobs WHERE id = ?",
                            (job_id,)).fetchone()
        owned = row is not None and row["status"] == "running" and row["attempt"] == attempt
        return bool(row and row["cancel_requested"]), owned

    def finish(self, job_id: int, attempt: int, status: str, *, error: str | None = None,
               traceback: str | None = None, result: Mapping[str, Any] | None = None,
               message: str | None = None) -> bool:
        """End a running attempt; False if it no longer owns the job (deleted, requeued, ...)."""
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        done = ", progress = 1, eta_s = 0" if status == "succeeded" else ""
        keep_message = "message" if message is None else "?"
        args: list[Any] = [status, time.time(), error, traceback,
                           None if result is None else json.dumps(result)]
        if message is not None:
            args.append(message)
        with self._tx("finish") as c:
            cur = c.execute(
                f"UPDATE jobs SET status = ?, finished_at = ?, error = ?, traceback = ?, "
                f"result = ?, message = {keep_message}{done} "
                "WHERE id = ? AND attempt = ? AND status = 'running'",
                (*args, job_id, attempt))
            return cur.rowcount == 1

    def reconcile(self, stale_after: float = STALE_AFTER_S) -> list[int]:
        """Running jobs whose process is gone (or silent for ``stale_after`` s) → interrupted.
        Returns their ids. Pids are checked on this machine only."""
        now, lost = time.time(), []
        for job in self.list(status="running"):
            pid = job.pid or job.worker_pid
            last = job.heartbeat_at or job.started_at or job.created_at
            if pid_alive(pid) and now - last < stale_after:
                continue
            why = (f"process {pid} is gone" if not pid_alive(pid)
                   else f"no heartbeat for {now - last:.0f} s")
            if self.finish(job.id, job.attempt, "interrupted", error=f"interrupted: {why}"):
                lost.append(job.id)
        return lost

    # -- worker processes ----------------------------------------------------------------------

    def register_worker(self, pid: int, concurrency: int) -> None:
        now = time.time()
        with self._tx("register_worker") as c:
            c.execute("INSERT OR REPLACE INTO workers (pid, started_at, heartbeat_at, concurrency)"
                      " VALUES (?, ?, ?, ?)", (pid, now, now, concurrency))

    def worker_heartbeat(self, pid: int) -> None:
        with self._tx("worker_heartbeat") as c:
            c.execute("UPDATE workers SET heartbeat_at = ? WHERE pid = ?", (time.time(), pid))

    def unregister_worker(self, pid: int) -> None:
        with self._tx("unregister_worker") as c:
            c.execute("DELETE FROM workers WHERE pid = ?", (pid,))

    def live_workers(self, stale_after: float = STALE_AFTER_S) -> list[int]:
        """Pids of worker processes that are alive; rows of dead ones are removed."""
        now, alive, dead = time.time(), [], []
        for row in self._query("SELECT pid, heartbeat_at FROM workers ORDER BY pid"):
            ok = pid_alive(row["pid"]) and now - row["heartbeat_at"] < stale_after
            (alive if ok else dead).append(row["pid"])
        if dead:
            with self._tx("prune_workers") as c:
                c.executemany("DELETE FROM workers WHERE pid = ?", [(p,) for p in dead])
        return alive
