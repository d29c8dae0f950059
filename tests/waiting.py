"""Waiting in tests without timing guesses: poll for the state you need, bounded only against
hangs (``SLOW``), never for speed — a busy CI machine may be many times slower than a dev one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SLOW = 300.0  # seconds: a bound for hangs only, never for speed


def wait_for(predicate: Callable[[], Any], timeout: float = SLOW, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def gradio_client(url: str):
    """A ``gradio_client.Client`` for ``url`` whose HTTP calls wait up to ``SLOW`` for the
    server: httpx's default of 5 s is a speed guess (twenty concurrent requests on a busy
    2-core machine took longer to be queued)."""
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": SLOW})
