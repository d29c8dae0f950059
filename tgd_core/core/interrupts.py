"""Ctrl-C as a request: stop training at the next step boundary, with ``latest.pt`` saved.

While :func:`stop_requests` is active (in the main thread of a process that trains: ``tgd
train``/``distill``, ``tgd experiment``), the first SIGINT or SIGTERM does not kill the
process: it prints one line and makes the returned function true, which the run's context
(``should_stop``) reports at the next step — the run saves ``latest.pt`` and raises
:class:`~tgd_core.training.Stopped`; a second signal raises KeyboardInterrupt at once (the
last saved checkpoint stays). Under torchrun every rank polls its own request and the ranks
agree at the next step (the stop decision is summed over ranks); a scheduler's SIGTERM before
a kill likewise leaves a resumable run. Outside the main thread signals cannot be caught, and
the function stays false.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NOTICE = ("stopping every run at its next step (latest.pt is saved; run the same command "
          "again to resume); press Ctrl-C again to stop at once")


@contextlib.contextmanager
def stop_requests(*, notice: str = NOTICE) -> Iterator[Callable[[], bool]]:
    """Catch SIGINT and SIGTERM while the block runs (see the module doc); yields the function
    that tells whether a stop was asked. The previous handlers come back after the block."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def handle(signum: int, frame) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        with contextlib.suppress(OSError):  # not print: the handler may run inside one
            os.write(2, f"tgd: {signal.Signals(signum).name}: {notice}\n".encode())

    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield asked.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_interrupts() -> None:
    """Let this process ignore SIGINT (a worker whose parent turns Ctrl-C into a stop request
    passed on to it: the terminal sends SIGINT to the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
