"""Workers: a supervisor process that claims queued jobs and runs each in its own child process.

``python -m tgd_core.jobs.worker`` (or ``tgd jobs worker``) runs :class:`Supervisor`: up to
``concurrency`` children ``python -m tgd_core.jobs.run_one ID``, each in its own session with
stdout/stderr appended to the job's ``output.log``. It marks jobs of dead processes
``interrupted`` at start-up and periodically, kills a cancelled child that has not stopped by the
job's ``kill_at`` (→ ``cancelled``), and on SIGTERM/SIGINT asks its children to stop (they end
``interrupted``, resumable), killing them after ``shutdown_timeout``. :func:`ensure_worker`
starts a detached worker unless one is alive (used by the app).

No job runs unwatched: a child watches its worker (``run_one --supervisor``) and, if the worker
dies (even by SIGKILL), stops at its next step with a checkpoint and ends ``interrupted``, as on
a shutdown, killing itself if it has not stopped ``shutdown_timeout`` seconds later. A child
stopping on its own keeps the job's state right without a worker; adopting orphans instead
would need a new worker to come (it may never) and could not reap or signal-watch them.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tgd_core.core.errors import TGDError
from tgd_core.jobs.store import STALE_AFTER_S, JobStore

RECONCILE_EVERY_S = 30.0
WORKER_HEARTBEAT_S = 5.0


@dataclass
class _Child:
    job_id: int
    attempt: int
    proc: subprocess.Popen
    log: IO[bytes]
    killed: str | None = None  # why we killed it: "cancel" or "shutdown"
    asked_to_stop: bool = False


@dataclass
class Supervisor:
    """Claims and runs jobs of ``store``; :meth:`run` returns when stopped (or, with ``once``,
    when the queue is empty and every child has finished)."""

    store: JobStore
    concurrency: int = 1
    poll: float = 1.0
    once: bool = False
    stale_after: float = STALE_AFTER_S
    shutdown_timeout: float = 30.0
    children: dict[int, _Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise TGDError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.poll <= 0:
            raise TGDError(f"poll must be > 0 seconds, got {self.poll}")
        self.pid = os.getpid()
        self._stopping_since: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        restore = self._install_signals()
        self.store.register_worker(self.pid, self.concurrency)
        self._say(f"worker {self.pid}: concurrency {self.concurrency}, store {self.store.db_path}")
        for job_id in self.store.reconcile(self.stale_after):
            self._say(f"job {job_id}: interrupted (its process is gone)")
        last_reconcile = last_beat = time.monotonic()
        try:
            while True:
                self._reap()
                self._enforce_cancels()
                if self._stopping_since is not None:
                    self._shutdown_children()
                    if not self.children:
                        break
                else:
                    idle = not self._fill_slots()
                    if self.once and idle and not self.children:
                        break
                now = time.monotonic()
                if now - last_beat >= WORKER_HEARTBEAT_S:
                    self.store.worker_heartbeat(self.pid)
                    last_beat = now
                if now - last_reconcile >= RECONCILE_EVERY_S:
                    self.store.reconcile(self.stale_after)
                    last_reconcile = now
                self._wait()
        finally:
            for child in self.children.values():  # only left on an unexpected error
                _kill_group(child.proc.pid)
            self.store.unregister_worker(self.pid)
            restore()
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._say(f"worker {self.pid}: stopped")
        return 0

    def stop(self) -> None:
        """Stop claiming; ask children to stop (idempotent; safe from signal handlers)."""
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
        try:
            os.write(self._wake_w, b"s")
        except (BlockingIOError, OSError):
            pass

    # -- steps -------------------------------------------------------------------------------

    def _fill_slots(self) -> bool:
        """Start jobs while slots are free; False when the queue was empty."""
        while len(self.children) < self.concurrency:
            job = self.store.claim(self.pid)
            if job is None:
                return False
            job.run_dir.mkdir(parents=True, exist_ok=True)
            log = open(job.log_path, "ab")  # noqa: SIM115 (closed when the child is reaped)
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} worker {self.pid} starts "
                      f"attempt {job.attempt} ---\n".encode())
            log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "tgd_core.jobs.run_one", str(job.id),
                 "--state-dir", str(self.store.state_dir), "--supervisor", str(self.pid),
                 "--grace", str(self.shutdown_timeout)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
            self.store.set_pid(job.id, job.attempt, proc.pid)
            self.children[job.id] = _Child(job.id, job.attempt, proc, log)
            self._say(f"job {job.id} ({job.kind}): started, pid {proc.pid}")
        return True

    def _reap(self) -> None:
        for job_id, child in list(self.children.items()):
            rc = child.proc.poll()
            if rc is None:
                continue
            del self.children[job_id]
            child.log.close()
            if child.killed == "cancel":
                error = "killed: did not stop before the cancel timeout"
                self.store.finish(job_id, child.attempt, "cancelled", error=error)
            elif child.killed == "shutdown" or child.asked_to_stop:
                error = "the worker shut down before the job finished"
                self.store.finish(job_id, child.attempt, "interrupted", error=error)
            else:  # a no-op when the child finished the job itself, as it should
                error = (f"runner process exited with status {rc} without finishing the job; "
                         f"see {child.log.name}")
                self.store.finish(job_id, child.attempt, "failed", error=error,
                                  traceback=_tail(Path(child.log.name)))
            try:
                status = f"now {self.store.get(job_id).status}"
            except TGDError:
                status = "deleted"
            self._say(f"job {job_id}: process {child.proc.pid} exited with status {rc} "
                      f"(job {status})")

    def _enforce_cancels(self) -> None:
        if not self.children:
            return
        now = time.time()
        for job in self.store.list(status="running"):
            child = self.children.get(job.id)
            if (child and child.killed is None and job.cancel_requested
                    and job.kill_at is not None and now >= job.kill_at):
                child.killed = "cancel"
                _kill_group(child.proc.pid)

    def _shutdown_children(self) -> None:
        assert self._stopping_since is not None
        late = time.monotonic() - self._stopping_since >= self.shutdown_timeout
        for child in self.children.values():
            if child.proc.poll() is not None:
                continue
            if late and child.killed is None:
                child.killed = "shutdown"
                _kill_group(child.proc.pid)
            elif not child.asked_to_stop:
                child.asked_to_stop = True
                child.proc.send_signal(signal.SIGTERM)  # run_one: should_stop() → True

    def _wait(self) -> None:
        """Sleep up to ``poll`` seconds, waking early when a child exits or a signal arrives."""
        try:
            select.select([self._wake_r], [], [], self.poll)
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        handlers = {signal.SIGCHLD: lambda *_: None, signal.SIGTERM: lambda *_: self.stop(),
                    signal.SIGINT: lambda *_: self.stop()}
        old = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        old_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for sig, h in old.items():
                signal.signal(sig, h)
        return restore

    def _say(self, text: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, limit: int = 4000) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return None


def ensure_worker(concurrency: int = 1, path: str | Path | None = None, *,
                  poll: float = 1.0) -> int:
    """Pid of a live worker of the store at ``path``; starts a detached one if none is alive.
    Its output goes to ``<state dir>/worker.log``."""
    store = JobStore(path)
    try:
        with open(store.state_dir / "worker.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time
            alive = store.live_workers()
            if alive:
                return alive[0]
            with open(store.state_dir / "worker.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tgd_core.jobs.worker", "--concurrency",
                     str(concurrency), "--poll", str(poll), "--state-dir", str(store.state_dir)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            store.register_worker(proc.pid, concurrency)
            return proc.pid
    finally:
        store.close()


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once")
    p.add_argument("--once", action="store_true",
                   help="exit when the queue is empty and running jobs have finished")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between queue checks")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S,
                   help="seconds without heartbeat after which a running job is interrupted")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="on SIGTERM/SIGINT (or when this worker dies), seconds to let jobs "
                        "checkpoint before they are killed")


def run_worker(args: argparse.Namespace) -> int:
    with JobStore(args.state_dir) as store:
        return Supervisor(store, args.concurrency, args.poll, args.once, args.stale_after,
                          args.shutdown_timeout).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgd_core.jobs.worker",
                                     description=__doc__.splitlines()[0])
    add_worker_arguments(parser)
    parser.add_argument("--state-dir", default=None, help="default: $TGD_STATE_DIR")
    try:
        return run_worker(parser.parse_args(argv))
    except TGDError as exc:
        print(f"worker: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
