"""Crash-safe file writes and the fault-injection points that test them.

Every file a run or job writes that another reader trusts (checkpoints, metrics, results, PI
cache parts, job outputs) is written with :func:`atomic_write`: the bytes go to a temporary file
in the same folder, are flushed to disk, and replace the target with ``os.replace`` — a reader
sees the old file or the new one, never half of one.

:func:`fault_point` marks the places where a crash matters. With ``TGD_FAULT=NAME`` (or
``NAME:K`` for the K-th time the point is reached, 1-based) in the environment, the process kills
itself with SIGKILL there, so a test can crash a real process at each write point and check
what a resume finds. Without the variable it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import IO

FAULT_ENV = "TGD_FAULT"
_hits: dict[str, int] = {}


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


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes | str, *,
                 fault: str | None = None) -> Path:
    """Write ``path`` atomically: ``write`` is the content (bytes or text) or a function that
    writes to a binary file object. ``fault`` names the fault point reached after the
    temporary file is complete and before it replaces ``path`` (the worst moment to die)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
