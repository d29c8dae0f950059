"""How a run stops early and resumably: :class:`Stopped` (its context asked), and
:class:`Interrupted` (the asking was Ctrl-C or SIGTERM: :func:`interruptible`); the context that
asks, :class:`StopWhen`. Light on import (no torch): the CLI catches these without loading the
loop."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from tgd_core.core.interrupts import stop_requests


class Stopped(Exception):
    """Raised when the context asked the run to stop; ``latest.pt`` holds the position."""


class Interrupted(Stopped):
    """A stop that Ctrl-C or SIGTERM asked for (the CLI exits 130, not 3)."""


@contextlib.contextmanager
def interruptible() -> Iterator[Callable[[], bool]]:
    """:func:`~tgd_core.core.interrupts.stop_requests` for the runs trained in the block:
    yields the function their contexts poll; a :class:`Stopped` leaving the block after a
    signal asked for it comes out as :class:`Interrupted`."""
    with stop_requests() as asked:
        try:
            yield asked
        except Stopped as exc:
            if asked() and not isinstance(exc, Interrupted):
                raise Interrupted(str(exc)) from None
            raise


class StopWhen:
    """A run context that asks the run to stop (it then saves ``latest.pt`` and raises
    :class:`Stopped`) once the clock passes ``deadline`` (epoch seconds), or ``asked()`` turns
    true (:func:`interruptible`; a parallel experiment's shared event), or, given the
    experiment's process id ``parent``, once that process is gone (a worker of a killed
    experiment is re-parented: it would train on unseen, beside the rerun). None: never."""

    def __init__(self, deadline: float | None = None, parent: int | None = None,
                 asked: Callable[[], bool] | None = None) -> None:
        self.deadline, self.parent, self.asked = deadline, parent, asked

    def should_stop(self) -> bool:
        return ((self.deadline is not None and time.time() >= self.deadline)
                or (self.asked is not None and self.asked())
                or (self.parent is not None and os.getppid() != self.parent))
