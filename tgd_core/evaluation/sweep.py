"""Evaluation conditions of a robustness sweep: clean, each corruption × severity, then Gaussian
noise at each σ — one builder (:func:`conditions`) for every sweep (``tgd evaluate --sweep``,
``evaluate`` jobs, experiments), and applying conditions to images (:meth:`Condition.apply`;
:func:`applied`, a whole sweep, corrupted by a pool of processes ahead of its consumer).

Light on import (no torch, no scipy): job configs list their conditions without loading models.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tgd_core.core.errors import TGDError

if TYPE_CHECKING:
    import numpy as np

CLEAN = "clean"
NOISE = "gaussian_noise_sigma"  # the ``corruption`` of additive-Gaussian-noise rows
#: Fewer images × conditions than this are corrupted here, one condition after the other: a
#: pool's start (each worker imports NumPy and SciPy, ~1 s) would cost more than it saves (a
#: condition takes ~0.4 ms an image on one core, docs/benchmarks.md).
PARALLEL_MIN_IMAGES = 20_000
#: A worker's peak memory per image corrupted: elastic_transform's, the largest (592 MiB for
#: 2,000 CIFAR-10 images at severity 5, measured); the automatic pool leaves room for this.
WORKER_BYTES_PER_IMAGE = 300_000


@dataclass(frozen=True)
class Condition:
    """One sweep condition as its table row names it: ``name`` (``clean``, a CIFAR-10-C
    corruption or ``gaussian_noise_sigma``), ``severity`` (0 for clean, None for noise) and
    ``sigma`` (the noise σ, None otherwise)."""

    name: str
    severity: int | None
    sigma: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Condition:
        """The condition of a sweep table row."""
        return cls(row["corruption"], row["severity"], row["sigma"])

    @property
    def is_clean(self) -> bool:
        return self.name == CLEAN

    @property
    def is_noise(self) -> bool:
        """Additive Gaussian noise at ``sigma`` (not the CIFAR-10-C ``gaussian_noise``)."""
        return self.sigma is not None

    @property
    def label(self) -> str:
        """A short human description: ``clean``, ``contrast 5``, ``noise σ=0.1``."""
        what = self.name if self.sigma is None else f"noise σ={self.sigma:g}"
        return f"{what} {self.severity or ''}".strip()

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """``images`` under this condition (the images themselves when clean)."""
        from tgd_core.data.corruptions import add_gaussian_noise, corrupt

        if self.is_clean:
            return images
        if self.is_noise:
            return add_gaussian_noise(images, self.sigma, seed=seed)
        return corrupt(images, self.name, self.severity, seed=seed)

    def row(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The table row of this condition: ``corruption``, ``severity``, ``sigma``, metrics."""
        return {"corruption": self.name, "severity": self.severity, "sigma": self.sigma,
                **metrics}


def conditions(corruptions: Iterable[str] = (), severities: Iterable[int] = (),
               sigmas: Iterable[float] = (), clean: bool = True) -> list[Condition]:
    """The sweep in table order: clean (if ``clean``), every corruption at every severity
    (corruption-major), then Gaussian noise at each σ."""
    severities = tuple(severities)
    built = [Condition(CLEAN, 0, None)] if clean else []
    built += [Condition(name, severity, None) for name in corruptions for severity in severities]
    built += [Condition(NOISE, None, float(sigma)) for sigma in sigmas]
    return built


def applied(sweep: Sequence[Condition], images: np.ndarray, seed: int = 0, *,
            workers: int | None = None) -> Iterator[tuple[Condition, np.ndarray]]:
    """Each condition of ``sweep``, in order, with ``images`` under it (:meth:`Condition.apply`).

    ``workers`` processes corrupt the images ahead of the consumer, at most two conditions each
    in flight (memory stays bounded); the results are those of one process, bit for bit (a
    condition's draws come from ``seed`` alone). None: every CPU this process may use, as many
    as the available memory holds (:data:`WORKER_BYTES_PER_IMAGE`), once the work reaches
    :data:`PARALLEL_MIN_IMAGES`; 1: here, each when it is asked for. The workers
    ignore Ctrl-C (the process that consumes decides) and stop when the iterator is closed.
    """
    sweep = list(sweep)
    workers = _worker_count(workers, sweep, len(images))
    if workers == 1:
        yield from ((condition, condition.apply(images, seed)) for condition in sweep)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_hold_images, initargs=(images,))
    upcoming, in_flight = iter(sweep), deque()

    def submit_next() -> None:
        condition = next(upcoming, None)
        if condition is not None:
            in_flight.append((condition, None if condition.is_clean
                              else pool.submit(_apply_held, condition, seed)))
    try:
        for _ in range(2 * workers):
            submit_next()
        while in_flight:
            condition, future = in_flight.popleft()
            submit_next()
            yield condition, images if future is None else future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_count(workers: int | None, sweep: list[Condition], n_images: int) -> int:
    """The processes :func:`applied` uses: at most one per condition that changes the images."""
    work = sum(not condition.is_clean for condition in sweep)
    if workers is None:
        if n_images * work < PARALLEL_MIN_IMAGES:
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        workers = min(cpus, _available_bytes() // (n_images * WORKER_BYTES_PER_IMAGE))
    elif workers < 1:
        raise TGDError(f"corruption workers must be >= 1, got {workers}")
    return max(1, min(workers, work))


def _available_bytes() -> int:
    """Memory available to new processes (Linux's MemAvailable; elsewhere, free pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


_held: dict[str, Any] = {}  # in a worker of applied(): the images it corrupts


def _hold_images(images: np.ndarray) -> None:
    from tgd_core.core.interrupts import ignore_interrupts

    ignore_interrupts()
    _held["images"] = images


def _apply_held(condition: Condition, seed: int) -> np.ndarray:
    return condition.apply(_held["images"], seed)
