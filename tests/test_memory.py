"""tgd_core.core.memory.fault_in: the pages of an array present after it, its values kept."""

import ctypes
import mmap
import sys
import threading

import numpy as np
import pytest

from tgd_core.core import memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore: Linux")
BIG = 64 << 20


def fresh_array(nbytes: int) -> np.ndarray:
    """A writable uint8 array over a new anonymous private mapping: none of its pages touched
    (np.empty may be served from heap memory that earlier tests already touched)."""
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, np.uint8)  # keeps the mapping alive


def resident_pages(array: np.ndarray) -> tuple[int, int]:
    """(resident, total) of the whole pages inside ``array``'s memory (Linux ``mincore``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    start = -(-array.ctypes.data // memory.PAGE) * memory.PAGE
    stop = (array.ctypes.data + array.nbytes) // memory.PAGE * memory.PAGE
    vec = np.zeros((stop - start) // memory.PAGE, np.uint8)
    assert libc.mincore(start, stop - start, vec.ctypes.data) == 0, ctypes.get_errno()
    return int((vec & 1).sum()), len(vec)


@pytest.fixture(params=["madvise", "touch"])
def populate_with(request, monkeypatch):
    """Both ways: MADV_POPULATE_WRITE where the kernel has it, and the one-write-per-page
    fallback (madvise unavailable)."""
    if request.param == "madvise" and memory._madvise() is None:
        pytest.skip("no madvise here")
    if request.param == "touch":
        monkeypatch.setattr(memory, "_madvise", lambda: None)
    return request.param


@linux_only
def test_fault_in_makes_every_page_of_a_fresh_array_resident(populate_with):
    fresh = fresh_array(BIG)
    before, total = resident_pages(fresh)
    assert before < total // 2  # a fresh mapping: not faulted in yet
    assert memory.fault_in(fresh) is fresh
    assert resident_pages(fresh) == (total, total)


def test_fault_in_keeps_the_values(populate_with):
    values = np.random.default_rng(0).random(BIG // 8)
    array = values.copy()
    memory.fault_in(array)
    assert np.array_equal(array, values)
    middle = array[1:-1]  # starts and ends inside pages
    memory.fault_in(middle)
    assert np.array_equal(array, values)


def test_fault_in_leaves_small_strided_and_read_only_arrays_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda *args: calls.append(args) or 0)
    small = np.zeros(memory.MIN_BYTES // 8 - 1)
    strided = np.zeros(BIG // 8)[::2]
    read_only = np.zeros(BIG // 8)
    read_only.flags.writeable = False
    for array in (small, strided, read_only):
        assert memory.fault_in(array) is array
    assert calls == []
    memory.fault_in(np.zeros(BIG // 8))
    assert len(calls) == 1 and calls[0][2] == memory.MADV_POPULATE_WRITE


@linux_only
def test_faulting_in_has_every_page_resident_when_the_body_ends(populate_with):
    arrays = [np.empty(BIG, np.uint8), np.empty(BIG // 8 * 3, np.float64)]
    values = np.arange(100, dtype=np.float64)
    arrays[1][:100] = values  # written before: kept
    with memory.faulting_in(*arrays, np.empty(10)):
        pass
    for array in arrays:
        resident, total = resident_pages(array)
        assert resident == total
    assert np.array_equal(arrays[1][:100], values)


def test_faulting_in_lets_the_body_write_while_it_runs():
    """The kernel writes from the front while the helper faults in further on: every value
    written in the body survives."""
    array = np.empty(BIG // 8, np.float64)
    with memory.faulting_in(array):
        array[:] = np.arange(len(array))
    assert np.array_equal(array, np.arange(len(array)))


def test_where_madvise_fails_the_helper_stops_without_writing(monkeypatch):
    """An old kernel refuses MADV_POPULATE_WRITE: the first slices are faulted in by writes
    before the body runs, and the helper thread, which must not write while the kernel does,
    gives up at its first refused call."""
    calls = []

    def refuse(address, length, advice):
        calls.append(threading.current_thread() is threading.main_thread())
        return -1

    monkeypatch.setattr(memory, "_madvise", lambda: refuse)
    arrays = [np.zeros(BIG, np.uint8), np.zeros(BIG, np.uint8)]
    with memory.faulting_in(*arrays):
        arrays[0][:] = 7
    assert calls == [True, True, False]  # the two first slices, then one try of the helper
    assert (arrays[0] == 7).all() and not arrays[1].any()
