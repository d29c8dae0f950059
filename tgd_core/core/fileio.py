"""Crash-safe file writes and the fault-injection points that test them.

Every file a run or job writes that another reader trusts (checkpoints, metrics, results, PI
cache parts, job outputs) is written with :func:`atomic_write`: the bytes go to a temporary file
in the same folder, are flushed to disk, and replace the target with ``os.replace`` — a reader
sees the old file or the new one, never half of one.

:func:`fault_point` marks the places where a crash matters. With ``TGD_FAULT=NAME`` (or
``NAME:K`` for the K-th time the point is reached, 1-based) in the environment, the process kills
itself with SIGKILL there, so a test can crash a real process at each write point and check
what a resume finds. Without the variable it costs one dictionary lookup. The points:
``checkpoint-<file name>`` (e.g. ``checkpoint-latest.pt``, ``checkpoint-best.pt``),
``metrics-row``, ``result`` (a run's result.json), ``experiment.eval`` (a run's eval.json),
``pi-cache-part`` and ``pi-cache-meta``, each
reached after the temporary file is complete and before it replaces the target.

A process killed inside :func:`atomic_write` leaves its temporary file behind;
:func:`remove_stale_temps` clears those of dead processes when the folder is used again. A
temporary file's name (:func:`temp_path`) tells its writer: the process id, and a tag of the
machine boot and PID namespace it runs in — on a volume several machines or containers share, a
process id says nothing about another one's processes, so their files are cleared only once
unchanged for :data:`FOREIGN_STALE_S`.
:func:`json_text` is the one JSON encoder for files and output that others parse: NaN and
infinities become ``null`` (``NaN`` is not JSON). :func:`file_sha256` names a file by its
content (memoised per path, size and modification time: :func:`memoised_by_stat`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from tgd_core.core.errors import TGDError

FAULT_ENV = "TGD_FAULT"
_hits: dict[str, int] = {}
_TEMP = re.compile(r"^\..+\.(?:([0-9a-f]{8})-)?(\d+)\.tmp$")  # .<name>.<host tag>-<pid>.tmp
FOREIGN_STALE_S = 3600.0  # a temporary file of another machine or PID namespace, unchanged
#                           this long, is a dead writer's (a live one writes for seconds)


def fault_point(name: str) -> None:
    """SIGKILL this process if ``TGD_FAULT`` names this point (and this is its K-th hit)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def check_replaceable(path: str | Path) -> None:
    """TGDError where ``path`` exists but is not a regular file (links followed): ``os.replace``
    would put a file in the place of a folder's name, a FIFO or a device — as root, even of
    ``/dev/null``."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise TGDError(f"cannot write {path}: it is {kind}; name the file to write")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes | str, *,
                 fault: str | None = None) -> Path:
    """Write ``path`` atomically: ``write`` is the content (bytes or text) or a function that
    writes to a binary file object. ``fault`` names the fault point reached after the
    temporary file is complete and before it replaces ``path`` (the worst moment to die).
    Only a regular file is replaced (:func:`check_replaceable`)."""
    path = Path(path)
    check_replaceable(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault_point(fault)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself (created if needed; no lock file
    left behind) while the block runs: a second process taking it meanwhile — a second
    experiment on the same folder, a worker a killed one left running — gets a one-line
    TGDError naming ``what`` it found under way, instead of interleaving its files with this
    one's. The kernel ends the lock with the process, however the process ends."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TGDError(f"{folder}: another process is {what} in this folder; wait for it "
                           "to end (or stop it), then run again") from None
        yield
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temp_path(target: str | Path, label: str = "") -> Path:
    """The temporary file beside ``target`` that this process writes it through:
    ``.<name>[.<label>].<host tag>-<pid>.tmp`` (:func:`host_tag`)."""
    target = Path(target)
    middle = f".{label}" if label else ""
    return target.with_name(f".{target.name}{middle}.{host_tag()}-{os.getpid()}.tmp")


@functools.cache
def host_tag() -> str:
    """8 hex digits naming this machine's boot and this process's PID namespace (where the
    system tells them; else the host name): process ids are comparable between two writers
    exactly when their tags are equal."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def remove_stale_temps(folder: str | Path, *, now: float | None = None) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``folder``;
    returns the deleted paths. A file written under this :func:`host_tag` is stale when its
    writer's process id is gone; one of another machine or PID namespace (or of a name without
    a tag) when unchanged for :data:`FOREIGN_STALE_S` before ``now`` (default: the clock).
    Temporary files of live writers (this process, a concurrent shard) are kept."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    now = time.time() if now is None else now
    for path in folder.iterdir():
        m = _TEMP.match(path.name)
        if m and _stale(path, m[1], int(m[2]), now):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _stale(path: Path, tag: str | None, pid: int, now: float) -> bool:
    """Whether the temporary file ``path`` of writer ``tag``/``pid`` is a dead writer's."""
    if tag == host_tag():
        return not _pid_alive(pid)
    try:
        return now - path.stat().st_mtime > FOREIGN_STALE_S
    except FileNotFoundError:  # its writer renamed it into place meanwhile
        return False


def _finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` as strict JSON: non-finite floats become ``null`` (``allow_nan=False`` holds)."""
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False)


def memoised_by_stat(fn: Callable[[str], Any]) -> Callable[[str | Path], Any]:
    """``fn`` of a file's resolved path, memoised per path, size and modification time (a
    plan compares the same checkpoints for every run); None where there is no such file."""
    cached = functools.lru_cache(maxsize=256)(lambda path, size, mtime_ns: fn(path))

    @functools.wraps(fn)
    def of(path: str | Path) -> Any:
        try:
            resolved = Path(path).resolve()
            stat = resolved.stat()
        except OSError:
            return None
        return cached(str(resolved), stat.st_size, stat.st_mtime_ns)

    return of


@memoised_by_stat
def file_sha256(path: str) -> str | None:
    """The SHA-256 of the file at ``path`` (hex), or None if there is no such file."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
