"""Fault in the pages of an output array before threads write it.

Threads that write into memory the process has not touched yet take its page faults one page
at a time, all of them at once, and on a virtual machine those faults contend: measured on the
project's 2-core VM (paper-mode PIs with float64 output, 20,000 images = 2.4 GB written by the
C kernel's two threads, three calls each way in one process), 2.4–10.9 s with up to 18 s of
system CPU into fresh memory, against 1.6 s (0.3 s of it faulting in) when the pages were
faulted in first by one thread. Linux (5.14+) faults a whole range in with one call,
``madvise(MADV_POPULATE_WRITE)`` (0.19 s for those 2.4 GB); elsewhere :func:`fault_in` writes
one byte of each page back to itself from one thread. Either way the array's values are kept.

:func:`faulting_in` overlaps that with the kernel: it faults in the first slice now and the
rest from a helper thread, front to back, ahead of a kernel that writes front to back (it
faults in about 12 GB/s; the kernel writes about 2 GB/s). Where it pays: paper-mode PIs with
float64 output, 20,000 images per call, interleaved in one process: median 1.49 s a call with
it against 1.89 s without (and the same 1.49 s faulting everything in first). uint8-only PIs
write 9× fewer bytes per image: 20,000 into a new array run as fast either way (~20,000/s), so
that path leaves the faults to the kernel's threads. The 60,000-image PI cache
(:func:`~tgd_core.topology.cache.cached_pis`) is another matter: its 900 MB result is written
part by part by the kernel while a helper thread writes the previous part from it to disk
(``O_DIRECT``), and :func:`fault_in` on the whole array before the first part made the fill
3.09–3.44 s against 4.06–5.36 s (six fills each way, interleaved; 0.07–0.10 s of it faulting
in). Faulting each part in just before its kernel call did worse (5.7–7.1 s), as did this
context's helper thread (4.84 s median against 4.62 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import mmap
import sys
import threading

import numpy as np

#: Arrays smaller than this are left alone (their faults are few).
MIN_BYTES = 1 << 20
MADV_POPULATE_WRITE = 23  # <linux/mman.h>, Linux 5.14+
PAGE = mmap.PAGESIZE
#: Bytes per slice of :func:`faulting_in`.
SLICE_BYTES = 16 << 20


@functools.lru_cache(maxsize=1)
def _madvise():
    """libc's ``madvise`` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def fault_in(array: np.ndarray) -> np.ndarray:
    """Make every page of ``array`` (C-contiguous, writable) present and writable now, from
    this thread, so that threads writing it later take no page faults; returns ``array``."""
    if _eligible(array):
        _fault_in_bytes(array.reshape(-1).view(np.uint8), 0, array.nbytes)
    return array


@contextlib.contextmanager
def faulting_in(*arrays: np.ndarray):
    """Context for a kernel that writes ``arrays`` from front to back: their first slices are
    faulted in on entry, the rest by a helper thread, slice by slice in step through all of
    them, while the body runs; the exit waits for it. The helper only ever calls ``madvise``
    (the fallback writes bytes back, which must not race the kernel's writes): without it
    everything is faulted in on entry, and where it fails (Linux before 5.14) the helper stops
    and the kernel faults the rest in itself, as it would without this."""
    flats = [array.reshape(-1).view(np.uint8) for array in arrays if _eligible(array)]
    steps = max((-(-flat.nbytes // SLICE_BYTES) for flat in flats), default=0)

    def fault_in_step(step: int, may_write: bool = True) -> bool:
        for flat in flats:
            lo, hi = flat.nbytes * step // steps, flat.nbytes * (step + 1) // steps
            if not _fault_in_bytes(flat, lo, hi, may_write=may_write):
                return False
        return True

    def fault_in_the_rest() -> None:
        for step in range(1, steps):
            if not fault_in_step(step, may_write=False):
                return

    if _madvise() is None:
        for step in range(steps):
            fault_in_step(step)
        steps = 0
    if steps:
        fault_in_step(0)
    helper = None
    if steps > 1:
        helper = threading.Thread(target=fault_in_the_rest, daemon=True)
        helper.start()
    try:
        yield
    finally:
        if helper is not None:
            helper.join()


def _eligible(array: np.ndarray) -> bool:
    return (array.nbytes >= MIN_BYTES and array.flags.c_contiguous
            and array.flags.writeable)


def _fault_in_bytes(flat: np.ndarray, lo: int, hi: int, *, may_write: bool = True) -> bool:
    """Fault in the pages that start in bytes [lo, hi) of ``flat`` (uint8, contiguous) and
    lie inside it (consecutive ranges cover every whole page of ``flat`` once): with
    ``madvise``, else, if ``may_write``, by writing one byte of each page back to itself.
    Returns False where it did nothing because ``madvise`` failed and it may not write."""
    base = flat.ctypes.data
    first = -(-(base + lo) // PAGE) * PAGE
    last = min(-(-(base + hi) // PAGE) * PAGE, (base + flat.nbytes) // PAGE * PAGE)
    if last <= first:
        return True
    madvise = _madvise()
    if madvise is not None and madvise(first, last - first, MADV_POPULATE_WRITE) == 0:
        return True
    if not may_write:
        return False
    touch = flat[first - base:last - base:PAGE]
    touch += 0  # a write per page: its fault; the values unchanged
    return True
